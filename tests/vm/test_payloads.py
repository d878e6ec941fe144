"""Payloads in real VMs: real programs next to spin workers, judged and compared.

Two short VMs for the comparison, one each for the stress tier, bad payloads and the
other shipped declarations.
"""

import json
import os
from pathlib import Path

from tests.helpers import ktstr

DATA = Path(__file__).resolve().parents[1] / "data"
USER = DATA / "payload_scenarios.py"
TOPO = "1n1l2c1t"


def _runs(scheduler: str) -> list[dict]:
    listing = ktstr(
        "results",
        "list",
        "--json",
        "--filter",
        f"scenario=payloads_and_spinners,scheduler={scheduler}",
    )
    return json.loads(listing.stdout)


def test_hackbench_and_stress_ng_next_to_spinners_compared_with_polarity():
    proc = ktstr(
        "compare", "--scheduler", "scx_simple", "--against", "eevdf",
        f"{USER}::payloads_and_spinners", "--runs", "1", "--topology", TOPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[1]: line for line in proc.stdout.splitlines()[2:] if line.strip()}
    assert "lower" in rows["hb/hackbench.time"], proc.stdout
    assert "higher" in rows["sng/stress-ng.bogo_ops"], proc.stdout
    for scheduler in ("eevdf", "scx_simple"):
        (run,) = _runs(scheduler)[-1:]
        run_dir = Path(os.environ["KTSTR_RUNS_DIR"]) / run["run"]
        record = json.loads((run_dir / "record.json").read_text())
        assert record["verdict"] == "pass", record["findings"]
        hb, sng = record["payloads"]
        assert hb["code"] == 0 and hb["metrics"]["time"]["value"] > 0
        assert sng["metrics"]["bogo_ops"]["value"] > 0
        assert (run_dir / hb["stdout_file"]).read_text().startswith("Running")
        assert any(w["cgroup_path"] == "spin" and w["units"] > 0 for w in record["workers"])
        judged = [f for f in record["findings"] if f["check"] == "payloads"]
        assert [f["status"] for f in judged] == ["pass", "pass"], judged


def test_the_stress_scenario_judges_stress_ng_by_exit_status_and_bogo_ops(tmp_path):
    out = tmp_path / "record.json"
    proc = ktstr("run", "stress", "--topology", TOPO, "--duration", "10", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (payload,) = json.loads(out.read_text())["payloads"]
    assert payload["code"] == 0
    for stressor in ("cpu", "fork", "affinity", "switch"):
        assert payload["metrics"][f"{stressor}_bogo_ops"]["value"] >= 1


def test_a_failing_payload_fails_and_unreadable_output_is_kept(tmp_path):
    out = tmp_path / "record.json"
    proc = ktstr("run", f"{USER}::bad_payloads", "--topology", "1n1l1c1t", "--json", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "payload failing in a exited 1, expected exit 0" in proc.stdout
    record = json.loads(out.read_text())
    failing, unreadable, reader = record["payloads"]
    assert failing["code"] == 1
    assert unreadable["head"][0].startswith("stress-ng, version")
    kinds = {f["kind"]: f["status"] for f in record["findings"] if f["check"] == "payloads"}
    assert kinds == {"exit_status": "fail", "unparsed": "inconclusive", "ok": "pass"}
    # The included file, from the archive cached by content, read by a program of the user's
    assert record["include_files"] == ["/include-files/user_include.txt"]
    run_dir = Path(proc.stdout.rsplit("run dir: ", 1)[1].strip())
    assert (run_dir / reader["stdout_file"]).read_text() == "hello from the host\n"


def test_every_other_shipped_payload_runs_and_reports_its_numbers(tmp_path):
    from tests.data.payload_scenarios import OTHERS

    out = tmp_path / "record.json"
    proc = ktstr("run", f"{USER}::every_shipped", "--topology", TOPO, "--json", str(out))
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr  # 2: one stopped at the end
    record = json.loads(out.read_text())
    assert [p["name"] for p in record["payloads"]] == [p.name for p in OTHERS]
    for payload, declared in zip(record["payloads"], OTHERS, strict=True):
        assert payload.get("stopped_by") or payload["code"] == 0, payload
        assert set(payload["metrics"]) == {m.name for m in declared.metrics}, payload
