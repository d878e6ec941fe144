"""The RunRecord's one loader, the one verdict path, and what a refused guest line does."""

import json
from dataclasses import fields

import pytest

from ktstr.checks import CHECKS, judge
from ktstr.checks.judge import SWITCHABLE
from ktstr.errors import ConfigError
from ktstr.record import SCHEMA, load
from ktstr.record.stored import problems
from ktstr.scenario.model import Checks
from tests.unit.test_checks import record, worker


def _stored(tmp_path, data) -> str:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "record.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return str(run)


def test_loader_names_the_file_and_the_fix_for_each_corruption(tmp_path):
    cases = [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a ktstr run record"),
        (json.dumps({"scenario": "steady"}), "record schema None"),
        (json.dumps({"schema": SCHEMA + 1}), "re-run the scenario with this ktstr"),
        (json.dumps({"schema": SCHEMA, "workers": {"0": {}}}), "field 'workers' is a dict"),
        (json.dumps({"schema": SCHEMA, "workers": [{"id": "zero"}]}), "no integer id"),
        (json.dumps({"schema": SCHEMA, "console": [1, 2]}), "console holds"),
    ]
    for text, expected in cases:
        with pytest.raises(ConfigError, match=expected) as err:
            load(_stored(tmp_path, text))
        assert "record.json" in str(err.value) or "record schema" in str(err.value)
    with pytest.raises(ConfigError, match="no record at"):
        load(tmp_path / "nowhere")


def test_loader_upgrades_version_1_without_claiming_a_clean_channel(tmp_path):
    old = record([worker(0), worker(1)])
    old["schema"] = 1
    loaded, run_dir = load(_stored(tmp_path, old))
    assert loaded["schema"] == 2 and loaded["kernel_allow"] == []
    assert "channel" not in loaded  # unknown, not zero
    assert judge(loaded).status == "pass"
    assert problems(loaded) == []


def test_cli_check_on_a_corrupt_record_is_one_sentence_and_exit_2(tmp_path):
    from tests.helpers import ktstr

    proc = ktstr("check", _stored(tmp_path, '{"schema": 2, "workers": 7}'))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "is corrupt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_switch_of_checks_turns_off_a_registered_check():
    switches = {f.name for f in fields(Checks) if f.type in ("bool", bool)}
    assert switches == set(SWITCHABLE)
    assert len({c.name for c in CHECKS}) == len(CHECKS)
    rec = record([worker(0), worker(1, gaps=[[2.5, 3.0, 1]])])
    assert judge(rec).status == "fail"
    rec["checks_enabled"] = {"not_stuck": False}
    assert judge(rec).status == "pass"


def test_threshold_typos_and_bad_allow_patterns_are_refused_when_declared():
    with pytest.raises(ConfigError, match="unknown threshold 'not_stuk.max_gap_ms'"):
        Checks(thresholds={"not_stuk.max_gap_ms": 500})
    with pytest.raises(ConfigError, match="finite number"):
        Checks(thresholds={"not_stuck.max_gap_ms": float("inf")})
    with pytest.raises(ConfigError, match="not a valid regex"):
        Checks(kernel_allow=["(unclosed"])
    assert Checks(thresholds={"not_stuck.max_gap_ms": "500"}).thresholds == {
        "not_stuck.max_gap_ms": 500.0
    }


def test_kernel_allow_lets_a_test_accept_a_known_line_and_only_that_line():
    warning = "[    3.100000] WARNING: CPU: 1 PID: 80 at kernel/sched/ext.c:123 known_thing"
    oops = "[    4.000000] Oops: 0000 [#1] SMP"
    rec = record([worker(0), worker(1)], console=[warning])
    assert judge(rec).status == "fail"
    rec["kernel_allow"] = [r"ext\.c:123 known_thing"]
    verdict = judge(rec)
    assert verdict.status == "pass"
    (ok,) = [f for f in verdict.findings if f.check == "kernel_health"]
    assert "1 allowed by kernel_allow" in ok.message
    rec["console"] = [warning, oops]
    (bad,) = [f for f in judge(rec).findings if f.check == "kernel_health"]
    assert bad.kind == "oops"


def test_refused_guest_lines_make_an_otherwise_passing_run_inconclusive():
    rec = record([worker(0), worker(1)])
    rec["channel"] = {"bad_lines": 0, "rejected": 0, "reasons": [], "flooded": None}
    assert judge(rec).status == "pass"
    rec["channel"] = {"bad_lines": 2, "rejected": 1, "reasons": ["worker: units is nan"]}
    verdict = judge(rec)
    assert verdict.status == "inconclusive"
    (f,) = [f for f in verdict.findings if f.check == "channel"]
    assert f.kind == "refused_lines" and "2 malformed lines and 1 invalid message" in f.message
    assert "units is nan" in f.message


def test_a_flooded_guest_is_inconclusive_not_a_vm_failure():
    rec = record([worker(0), worker(1)])
    rec["vm_end"] = "flooded"
    rec["channel"] = {"bad_lines": 0, "rejected": 0, "flooded": "the guest flooded the channel"}
    verdict = judge(rec)
    assert verdict.status == "inconclusive"
    assert [f.kind for f in verdict.findings if f.check in ("channel", "vm")] == ["flooded"]
    rec["vm_end"] = "timeout"
    assert judge(rec).status == "fail"


def test_a_workload_the_guest_never_ran_is_judged_by_the_scheduler_alone():
    rec = record([])
    rec["workload_skipped"] = "scx_simple left before the workload started"
    verdict = judge(rec)
    assert verdict.status == "fail"
    assert {f.check for f in verdict.findings} >= {"scheduler"}
    assert not [f for f in verdict.findings if f.check in ("not_stuck", "fairness", "isolation")]
    (f,) = [f for f in verdict.findings if f.check == "scheduler"]
    assert f.kind == "detached" and "left before the workload" in f.message


def test_guest_text_in_a_finding_cannot_drive_the_terminal():
    line = "[    2.0] BUG: \x1b[2J\x1b]0;owned\x07 cleared\rhidden"
    verdict = judge(record([worker(0), worker(1)], console=[line]))
    (f,) = [f for f in verdict.findings if f.check == "kernel_health"]
    assert "\x1b" not in f.message and "\r" not in f.message and "\x07" not in f.message
    assert "\\x1b[2J" in f.message and "\\r" in f.message


def test_run_scenario_refuses_a_duration_that_is_not_positive_before_booting(tmp_path, monkeypatch):
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get
    from ktstr.topology import Topology

    monkeypatch.setenv("KTSTR_RUNS_DIR", str(tmp_path))
    for bad in (-1.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="not a positive number"):
            run_scenario(get("steady"), Topology.parse("1n1l2c1t"), duration_s=bad)


def test_a_plan_the_kernel_or_scheduler_cannot_carry_out_is_refused_before_booting():
    from ktstr.errors import KernelError
    from ktstr.fixture_sched import SCX_KTSTR
    from ktstr.kernel.image import KernelInfo
    from ktstr.runner import check_plan_needs
    from ktstr.scenario.model import EXT, CgroupDef, Op, Scenario, Step
    from ktstr.scenario.plan import compile_plan
    from ktstr.scheduler import EEVDF, Scheduler
    from ktstr.topology import Topology

    def plan(*ops):
        return compile_plan(Scenario("t", "", [Step(list(ops))]), Topology.parse("1n2l2c1t"))

    no_ext = KernelInfo("/k", "6.12.1", "/k", "bzImage", 1, None, False, True, True)
    knob = plan(Op.add_cgroup(CgroupDef("a")), Op.fixture_knob("pile", 0))
    with pytest.raises(ConfigError, match="sets fixture knobs \\(pile=0\\) but runs under eevdf"):
        check_plan_needs(knob, EEVDF, no_ext)
    with pytest.raises(ConfigError, match="--scheduler scx_ktstr"):
        check_plan_needs(knob, Scheduler("scx_simple", "scx_simple"), no_ext)
    check_plan_needs(knob, SCX_KTSTR, no_ext)  # the fixture takes its knobs
    ext = plan(Op.add_cgroup(CgroupDef("a", policy=EXT)))
    with pytest.raises(KernelError, match="asks for SCHED_EXT workers, but kernel 6.12.1 lacks"):
        check_plan_needs(ext, EEVDF, no_ext)


def test_coverage_names_the_workers_a_switch_partial_scheduler_left_to_the_fair_class():
    rec = record([worker(0), worker(1), worker(2, policy="fifo")])
    assert [f.status for f in judge(rec).findings if f.check == "coverage"] == ["skip"]
    rec["scheduler"] = {"name": "scx_partial", "binary": "/x/scx_partial", "events": []}
    for w in rec["workers"]:
        w["ext_at_start"] = False
    (f,) = [f for f in judge(rec).findings if f.check == "coverage"]
    assert f.status == "inconclusive" and f.kind == "not_scheduled"
    assert "scx_partial scheduled none of the 2 workers: workers 0, 1 ran" in f.message
    assert "policy=EXT" in f.message
    rec["workers"][0]["ext_at_start"] = True
    (f,) = [f for f in judge(rec).findings if f.check == "coverage"]
    assert "scheduled 1 of 2 workers: workers 1 ran" in f.message
    rec["workers"][1]["ext_at_start"] = True
    (f,) = [f for f in judge(rec).findings if f.check == "coverage"]
    assert f.status == "pass" and "all 2 workers" in f.message
