"""Metrics from hand-built records, A/B statistics on synthetic samples, policies, the index."""

import itertools
import json
import math
import random

import pytest

from ktstr.errors import ConfigError
from ktstr.record import SCHEMA
from ktstr.results import baselines, compare, store
from ktstr.results.metrics import METRICS, values


def record(
    units=100,
    gap=0.05,
    migrations=4,
    wake=None,
    scenario="steady",
    topo="1n2l2c1t",
    verdict="pass",
    created="2026-11-23T10:00:00",
):
    worker = {
        "id": 0,
        "units": units,
        "start_s": 0.0,
        "end_s": 10.0,
        "gaps": [[gap, 1.0, 0]],
        "migrations": migrations,
        "wait_ns": 2_000_000,
        "timeslices": 4,
        "error": None,
        "wake": wake,
        "cpu_time_ns": 9 * 10**9,
    }
    return {
        "schema": SCHEMA,
        "scenario": scenario,
        "topology": topo,
        "workers": [worker, dict(worker, id=1)],
        "findings": [
            {"check": "fairness", "status": "pass", "kind": "ok", "message": "", "value": 3.0}
        ],
        "timeline": [{"util": {"0": 0.9, "1": 0.45}}],
        "verdict": verdict,
        "created": created,
        "scheduler": {"name": "eevdf", "profile": None},
        "kernel": {"release": "7.2.13"},
        "accel": {"name": "tcg"},
    }


def test_metrics_from_a_record():
    v = values(record(wake={"n": 10, "p50_us": 100.0, "p99_us": 900.0, "max_us": 1000.0}))
    assert v["worst_gap"] == pytest.approx(50.0)
    assert v["migrations"] == 8 and v["work_units"] == 200
    assert v["work_rate"] == pytest.approx(10.0)
    assert v["runq_delay_mean"] == pytest.approx(0.5)
    assert v["wake_p99"] == 900.0 and v["wake_cv"] == 0.0
    assert v["imbalance"] == pytest.approx(2.0)
    assert v["worst_fairness_spread"] == 3.0
    assert "weight_share_deviation" not in v  # nothing to measure
    assert "io_iops" not in v and "io_lat_p99" not in v  # no disk I/O
    assert set(v) <= set(METRICS)


def test_disk_io_metrics():
    r = record()
    for i, w in enumerate(r["workers"]):
        w["io"] = {"iops": 100.0 + i, "lat_us": {"p50": 1.0, "p99": 1000.0 * (i + 1), "max": 1.0}}
    v = values(r)
    assert v["io_iops"] == 201.0 and v["io_lat_p99"] == 1500.0


def test_identical_distributions_are_no_regression():
    rng = random.Random(1)
    a = [100 + rng.gauss(0, 5) for _ in range(10)]
    row = compare.compare_samples("g", "worst_gap", a, list(a))
    assert row.verdict == "ok" and row.p == pytest.approx(1.0)


def test_clear_shift_is_a_regression_and_polarity_matters():
    rng = random.Random(2)
    a = [100 + rng.gauss(0, 5) for _ in range(10)]
    b = [300 + rng.gauss(0, 5) for _ in range(10)]
    assert compare.compare_samples("g", "worst_gap", a, b).verdict == "regression"
    assert (
        compare.compare_samples("g", "work_units", [x * 10 for x in a], [x * 10 for x in b]).verdict
        == "better"
    )


def test_tiny_noisy_shift_is_not_significant():
    rng = random.Random(3)
    a = [100 + rng.gauss(0, 60) for _ in range(4)]
    b = [x + 90 for x in [100 + rng.gauss(0, 60) for _ in range(4)]]
    row = compare.compare_samples("g", "worst_gap", a, b)
    assert row.verdict in ("n.s.", "ok") and row.p > 0.05


def test_exact_mann_whitney_small_samples():
    assert compare.mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert compare.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert compare.mann_whitney([], [1]) == 1.0


def test_mann_whitney_and_interval_match_known_values():
    # R's wilcox.test example (Hollander & Wolfe): W = 35, one-sided p 0.1272
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    assert compare.mann_whitney(x, y) == pytest.approx(2 * 0.1272061272, abs=1e-9)
    assert compare.mann_whitney([5.0] * 3, [5.0] * 3) == 1.0
    assert compare.ci95([1.0]) == 0.0
    assert compare.ci95([2.0, 4.0, 6.0]) == pytest.approx(1.959964 * 2 / math.sqrt(3), rel=1e-6)


def _enumerated_p(a: list[float], b: list[float]) -> float:
    """Exact two-sided p by enumerating every split of the (tie-averaged) ranks."""
    pooled = sorted(a + b)
    rank = {v: (pooled.index(v) + 1 + len(pooled) - pooled[::-1].index(v)) / 2 for v in pooled}
    ranks = [rank[v] for v in a + b]
    observed = sum(ranks[: len(a)])
    sums = [sum(c) for c in itertools.combinations(ranks, len(a))]
    low = sum(s <= observed + 1e-9 for s in sums) / len(sums)
    high = sum(s >= observed - 1e-9 for s in sums) / len(sums)
    return min(1.0, 2 * min(low, high))


def test_exact_mann_whitney_with_ties_is_the_permutation_distribution():
    for a, b in [
        ([1, 2, 2, 2], [2, 2, 3, 4]),
        ([1, 1, 2, 3], [2, 3, 3, 4, 5]),
        ([1, 2, 2, 3, 3, 3], [3, 4, 4, 5, 5, 6, 7]),
    ]:
        assert compare.mann_whitney(a, b) == pytest.approx(_enumerated_p(a, b))


def test_large_samples_use_the_tie_corrected_normal_approximation():
    a = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    b = [2, 2, 3, 3, 4, 4, 5, 5, 5, 5]
    n1, n2, n = len(a), len(b), len(a) + len(b)
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    ties = sum((a + b).count(v) ** 3 - (a + b).count(v) for v in set(a + b))
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    assert compare.mann_whitney(a, b) == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_policy_overrides_thresholds(tmp_path):
    a, b = [100.0] * 6, [130.0] * 6
    assert compare.compare_samples("g", "worst_gap", a, b).verdict == "ok"  # below 50 ms abs
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"worst_gap": {"abs": 10, "rel": 0.1}}))
    policy = compare.load_policy(str(policy_file))
    assert compare.compare_samples("g", "worst_gap", a, b, policy).verdict == "regression"
    policy_file.write_text(json.dumps({"nope": {}}))
    with pytest.raises(ConfigError, match="unknown metric"):
        compare.load_policy(str(policy_file))


def test_compare_pairs_by_scenario_and_topology():
    a = [record(gap=0.05), record(gap=0.06), record(topo="2n4l2c1t")]
    b = [record(gap=0.05), record(scenario="other")]
    rows = compare.compare(a, b)
    assert {r.group for r in rows} == {"steady/1n2l2c1t"}


def test_index_queries_and_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(tmp_path))
    for i, (sched, kernel) in enumerate(
        [("eevdf", "7.2.13"), ("scx_simple", "7.2.13"), ("scx_simple", "6.12.1")]
    ):
        run_dir = tmp_path / f"2026-run-{i}"
        run_dir.mkdir()
        rec = record(created=f"2026-11-23T10:00:0{i}")
        rec["scheduler"] = {"name": sched, "profile": None}
        rec["kernel"] = {"release": kernel}
        (run_dir / "record.json").write_text(json.dumps(rec))
    assert store.reindex() == 3
    assert [r["run"] for r in store.query({"scheduler": "scx_simple", "kernel": "7.2"})] == [
        "2026-run-1"
    ]
    with pytest.raises(ConfigError, match="known column"):
        store.parse_filters(["colour=red"])
    assert baselines.save("main", {"scheduler": "eevdf"}) == ["2026-run-0"]
    assert len(baselines.records("main")) == 1
    assert len(baselines.records("scheduler=scx_simple")) == 2
    with pytest.raises(ConfigError, match="no baseline"):
        baselines.records("scheduler=nothing")


def test_git_revision_side_selects_runs_made_at_that_commit(tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "sched-project"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    monkeypatch.chdir(repo)
    sha = baselines.git_commit("HEAD")
    assert sha and len(sha) == 40
    runs = tmp_path / "runs"
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(runs))
    run_dir = runs / "r1"
    run_dir.mkdir(parents=True)
    rec = record()
    rec["git"] = {"commit": sha, "dirty": False}
    (run_dir / "record.json").write_text(json.dumps(rec))
    store.reindex()
    assert len(baselines.records("HEAD")) == 1
    assert baselines.git_commit("no-such-rev") is None


def _reportable():
    rec = record(wake={"n": 10, "p50_us": 100.0, "p99_us": 900.0, "max_us": 1000.0})
    rec["timeline"] = [{"at_s": t / 2, "util": {"0": 0.9, "1": 0.4 + t / 40}} for t in range(12)]
    rec["events"] = [{"op": "add_cgroup", "path": "cg_0", "weight": 200}]
    for w in rec["workers"]:
        w["cgroup_path"] = "cg_0"
        w["progress"] = [[t / 10, t * 5] for t in range(60)]
        w["wake"] = dict(w["wake"], cdf_us=[100.0 + 20 * i for i in range(50)])
    rec["verdict"] = "fail"
    rec["findings"].append(
        {"check": "scheduler", "status": "fail", "kind": "stall", "message": "qmap stalled <b>"}
    )
    return rec


def test_html_report_is_self_contained_with_plots():
    from ktstr.results import report

    page = report.html_report([_reportable()], "t")
    assert page.count("data:image/png;base64,") == 5
    assert "BUG SUMMARY: [scheduler/stall]" in page and "&lt;b&gt;" in page  # escaped
    assert "<script" not in page and "http" not in page  # nothing fetched


def test_markdown_report_writes_images_next_to_it(tmp_path):
    from ktstr.results import report

    out = report.markdown_report([_reportable()], tmp_path / "summary.md")
    text = out.read_text()
    assert "| scheduler | fail | stall |" in text
    images = sorted(p.name for p in tmp_path.glob("summary-*.png"))
    assert len(images) == 5 and all(f"]({name})" in text for name in images)


def test_compare_page_has_bars_with_intervals():
    from ktstr.results import report

    rows = compare.compare(
        [record(gap=0.05), record(gap=0.06)], [record(gap=0.30), record(gap=0.32)]
    )
    page = report.compare_html(rows, "main", "patch")
    assert "A: main vs B: patch" in page and "data:image/png;base64," in page
