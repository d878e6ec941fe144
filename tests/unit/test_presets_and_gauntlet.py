"""Presets, constraint filtering, expansion ids, sharding; the pytest gauntlet's collection."""

import pytest

from ktstr.errors import ConfigError
from ktstr.presets import PRESETS, Constraints, Variant, expand, parse_shard, preset, shard

pytest_plugins = ["pytester"]


def test_preset_table_covers_what_schedulers_trip_on():
    topos = [preset(n) for n in PRESETS]
    assert len(topos) >= 20
    cpus = [t.cpus for t in topos]
    assert min(cpus) == 4 and max(cpus) == 252
    llcs = {t.llcs for t in topos}
    assert {1, 3, 5, 7, 15} <= llcs and max(llcs) <= 15
    assert {1, 2, 4} <= {t.numa_nodes for t in topos}
    assert {1, 2} <= {t.threads_per_core for t in topos}
    assert len(set(PRESETS.values())) == len(PRESETS)
    with pytest.raises(ConfigError, match="topo presets"):
        preset("nope")


def test_constraints_filter_and_ids():
    limits = Constraints(min_llcs=2, max_cpus=16, requires_smt=True)
    variants = expand(limits.reason, None)
    # 2+ LLCs, SMT, at most 16 vCPUs: 1n2l2c2t (8), 1n3l2c2t (12) and 2n4l2c2t (16), table order
    assert variants == [
        Variant("smt-2llc", "1n2l2c2t", None),
        Variant("smt-3llc", "1n3l2c2t", None),
        Variant("numa2-smt", "2n4l2c2t", None),
    ]
    assert all(preset(v.preset).llcs >= 2 for v in variants)
    assert all(
        preset(v.preset).threads_per_core == 2 and preset(v.preset).cpus <= 16 for v in variants
    )
    assert [v.id for v in variants] == [v.preset for v in variants]  # EEVDF: no profile
    with_profiles = expand(limits.reason, ["default", "llc"])
    assert with_profiles[0].id.endswith("/default") and len(with_profiles) == 2 * len(variants)
    everything = expand(Constraints().reason, None)  # no limits: every preset, table order
    assert len(everything) == 21 and everything[0] == Variant("tiny-1llc", "1n1l4c1t", None)
    assert everything[-1] == Variant("max-cpu", "1n14l9c2t", None)
    assert Constraints(max_cpus=4).reason(preset("tiny-smt")) is None
    assert Constraints(max_cpus=3).reason(preset("tiny-smt")) == (
        "topology 1n1l2c2t: the test allows at most 3 CPUs"
    )


def test_the_plugin_reexports_the_constraints_the_gauntlet_uses():
    from ktstr import pytest_plugin

    assert pytest_plugin.Constraints is Constraints


def test_shards_are_disjoint_complete_and_balanced():
    variants = expand(Constraints().reason, ["default", "a", "b"])
    parts = [shard(variants, i, 4) for i in range(1, 5)]
    ids = [v.id for part in parts for v in part]
    assert sorted(ids) == sorted(v.id for v in variants) and len(ids) == len(set(ids))
    loads = [sum(v.cost for v in part) for part in parts]
    assert max(loads) - min(loads) <= max(v.cost for v in variants)
    forward = {v.id for v in shard(variants, 2, 4)}
    assert forward == {v.id for v in shard(variants[::-1], 2, 4)}  # order-independent
    for bad in ("0/4", "5/4", "x/y", "3"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_variant_cost_grows_with_cpus():
    assert Variant("a", "1n1l4c1t", None).cost < Variant("b", "1n4l4c2t", None).cost


GAUNTLET_FILE = """
from ktstr import CgroupDef, Flag, Scheduler, ktstr_test

SCHED = Scheduler("scx_demo", "scx_demo", flags={"a": Flag(("-a",)), "b": Flag(("-b",))})

@ktstr_test(topology="1n2l2c1t", min_llcs=3, max_cpus=16)
def test_eevdf(ctx):
    return ctx.run_defs([CgroupDef("cg")])

@ktstr_test(topology="1n2l2c1t", scheduler=SCHED, requires_smt=True, max_cpus=8)
def test_sched(ctx):
    return ctx.run_defs([CgroupDef("cg")])
"""


def test_pytest_gauntlet_collects_stable_ids_and_shards(pytester):
    pytester.makepyfile(test_g=GAUNTLET_FILE)
    plain = pytester.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert "test_g.py::test_eevdf" in plain.stdout.str()
    assert "[" not in plain.stdout.str().split("test_eevdf")[1].split("\n")[0]
    full = pytester.runpytest_subprocess(
        "--collect-only", "-q", "--ktstr-gauntlet", "-p", "no:cacheprovider"
    )
    out = full.stdout.str()
    assert "test_g.py::test_eevdf[odd-3llc]" in out
    assert "test_g.py::test_sched[smt-2llc/a+b]" in out
    assert "test_eevdf[tiny-2llc]" not in out  # min_llcs=3
    collected = [ln for ln in out.splitlines() if "::" in ln]
    shards = []
    for i in (1, 2):
        part = pytester.runpytest_subprocess(
            "--collect-only",
            "-q",
            "--ktstr-gauntlet",
            f"--ktstr-shard={i}/2",
            "-p",
            "no:cacheprovider",
        )
        shards.append({ln for ln in part.stdout.str().splitlines() if "::" in ln})
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(collected)


def test_gauntlet_plan_and_matrix():
    from ktstr import gauntlet
    from ktstr.scheduler import EEVDF

    cells = gauntlet.plan(["steady", "cpuset_apply"], EEVDF, ["tiny-2llc", "odd-3llc"], None)
    assert [(s, v.id) for s, v in cells] == [
        ("steady", "tiny-2llc"),
        ("steady", "odd-3llc"),
        ("cpuset_apply", "tiny-2llc"),
        ("cpuset_apply", "odd-3llc"),
    ]
    with pytest.raises(ConfigError, match="no scenario named"):
        gauntlet.plan(["nope"], EEVDF, None, None)
    done = [
        gauntlet.Cell(s, v, "fail" if v.id == "odd-3llc" else "pass", "/r", None) for s, v in cells
    ]
    text = gauntlet.matrix(done)
    assert text.splitlines()[0].split()[1:] == ["tiny-2llc", "odd-3llc"]
    assert "FAIL" in text.splitlines()[1] and "pass" in text.splitlines()[1]


def test_budget_selection_covers_most_per_second(tmp_path, monkeypatch):
    from ktstr import budget
    from ktstr.scheduler import EEVDF

    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    model = budget.calibrated()
    assert model.samples == 0 and model.fixed_s == budget.DEFAULT_FIXED_S
    from ktstr import gauntlet

    cells = gauntlet.plan(["steady", "cpuset_apply"], EEVDF, None, None, max_cpus=252)
    small = budget.select(cells, "eevdf", 12, 120, model)
    assert small.seconds <= 120 and 0 < len(small.cells) < len(cells)
    big = budget.select(cells, "eevdf", 12, 10**6, model)
    assert len(big.cells) == len(cells) and big.covered == big.features
    assert small.covered / small.features > len(small.cells) / len(cells)  # greedy pays off
    text = small.summary()
    assert text.startswith(f"{len(small.cells)}/{len(cells)} variants") and "configurations" in text
    assert budget.select(cells, "eevdf", 12, 1, model).cells == []


def test_cost_model_calibrates_from_measured_runs(tmp_path, monkeypatch):
    from ktstr import budget

    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    for cpus in (2, 4, 8, 16):
        budget.record_cost(cpus, 12.0, 12.0 + 3.0 + 0.5 * cpus)
    model = budget.calibrated()
    assert model.samples == 4
    assert abs(model.fixed_s - 3.0) < 1e-6 and abs(model.per_cpu_s - 0.5) < 1e-6


def test_pytest_gauntlet_refuses_a_backing_file_its_parallel_workers_would_share(
    pytester, monkeypatch, tmp_path
):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    pytester.makepyfile(
        test_user=f"""
from ktstr import Disk
from ktstr.pytest_plugin import ktstr_test

@ktstr_test(disks=[Disk(backing={str(tmp_path / "shared.img")!r})])
def test_io(ctx):
    return ctx.run_defs([])
"""
    )
    args = ("--collect-only", "--ktstr-gauntlet")
    result = pytester.runpytest(*args, "--ktstr-presets", "tiny-2llc,tiny-smt")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["ktstr: test_io: disk 0 writes to *shared.img, which 2 VMs*-n 0."])
    assert "Traceback" not in result.stdout.str() and "During handling" not in result.stdout.str()
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "1")
    assert pytester.runpytest(*args, "--ktstr-presets", "tiny-2llc,tiny-smt").ret == 0


def test_pytest_gauntlet_runs_named_presets_past_the_cap_and_shows_exclusions(pytester):
    pytester.makepyfile(
        test_user="""
from ktstr import CgroupDef
from ktstr.pytest_plugin import ktstr_test

@ktstr_test()
def test_any(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])

@ktstr_test(max_cpus=4)
def test_small(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])
"""
    )
    result = pytester.runpytest(
        "--collect-only", "-q", "--ktstr-gauntlet", "--ktstr-presets", "tiny-2llc,numa4-smt"
    )
    text = result.stdout.str()
    # numa4-smt has 32 vCPUs: named, it runs for a test without its own limit
    assert "test_user.py::test_any[numa4-smt]" in text and "test_any[tiny-2llc]" in text
    # the test that allows 4 vCPUs gets it as a skipped item that says why
    assert "test_small[numa4-smt]" in text
    skipped = pytester.runpytest(
        "-rs", "--ktstr-gauntlet", "--ktstr-presets", "numa4-smt", "-k", "small"
    )
    skipped.stdout.fnmatch_lines(["*SKIPPED*topology 4n8l2c2t: the test allows at most 4 CPUs*"])
    unknown = pytester.runpytest("--collect-only", "--ktstr-gauntlet", "--ktstr-presets", "nope")
    assert unknown.ret != 0
    unknown.stdout.fnmatch_lines(["*ktstr: --ktstr-presets: no topology preset named 'nope'*"])
    assert "Traceback" not in unknown.stdout.str()
