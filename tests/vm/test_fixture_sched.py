"""ktstr's own fixture scheduler, scx_ktstr: correct by default, and each knob tested here
makes the fault it names, as the record shows."""

import dataclasses

from ktstr.fixture_sched import CONTROL_FILE, SCX_KTSTR, knob_args
from ktstr.runner import run_scenario
from ktstr.scenario.catalog import get
from ktstr.scenario.model import CgroupDef, Op, Scenario, Step
from ktstr.topology import Topology

TOPO = Topology.parse("1n2l2c1t")


def run(*args: str, duration: float = 5, watchdog_s: float | None = None) -> dict:
    sched = dataclasses.replace(SCX_KTSTR, watchdog_timeout_s=watchdog_s)
    record, _ = run_scenario(
        get("steady"), TOPO, duration_s=duration, scheduler=sched, extra_args=args
    )
    return record


def output(record: dict) -> list[str]:
    return [o["line"] for o in record["scheduler"]["output"]]


def failures(record: dict, check: str) -> list[dict]:
    return [f for f in record["findings"] if f["check"] == check and f["status"] == "fail"]


def cpus_of(worker: dict) -> set[int]:
    return {int(cpu) for cpu in worker["cpus"]}


def test_no_knob_is_a_correct_scheduler():
    record = run()
    assert record["verdict"] == "pass", record["findings"]
    assert "EXIT: unregistered from user space" in output(record)
    # it really ran the workers on every CPU, not on one
    assert len(set().union(*(cpus_of(w) for w in record["workers"]))) > 1


def test_pile_runs_every_worker_on_one_cpu():
    record = run(*knob_args(pile=0))
    assert "scx_ktstr: knob pile: off -> 0 (command line)" in output(record)
    for worker in record["workers"]:
        assert cpus_of(worker) == {0}, worker["cpus"]
        assert {cpu for _, cpu in worker["residency"]} == {0}
    assert not failures(record, "scheduler")


def test_error_after_s_is_an_error_exit_naming_scx_bpf_error():
    record = run(*knob_args(error_after_s=1.5))
    assert record["verdict"] == "fail"
    (finding,) = failures(record, "scheduler")
    assert finding["kind"] == "error_exit"
    assert "called scx_bpf_error() at scx_ktstr.bpf.c:" in finding["message"]
    assert "error_after_s knob" in finding["message"]


def test_stall_after_s_is_a_runnable_task_stall():
    record = run(*knob_args(stall_after_s=1.5), duration=6, watchdog_s=2)
    (finding,) = failures(record, "scheduler")
    assert finding["kind"] == "stall" and "did not run for" in finding["message"]


def test_a_line_written_to_the_control_file_changes_a_knob_while_it_runs():
    # No scenario op writes a file in the guest, so the loader appends the lines itself,
    # 1.5 s after attaching, and reads them back through the control file as it would
    # read anybody's.
    record = run("--write-knob-after=1.5:bogus=1", "--write-knob-after=1.5:pile=0")
    lines = output(record)
    assert any(f"{CONTROL_FILE}:1: unknown knob 'bogus'" in ln for ln in lines), lines
    knob = f"scx_ktstr: knob pile: off -> 0 ({CONTROL_FILE}:2)"
    assert knob in lines, lines
    # in the scenario's time: when the knob changed
    start = next(e["host_s"] for e in record["events"] if e["op"] == "start")
    at = next(o["host_s"] for o in record["scheduler"]["output"] if o["line"] == knob) - start
    before = set().union(*({c for t, c in w["residency"] if t < at} for w in record["workers"]))
    assert len(before) > 1, before  # spread out before
    for worker in record["workers"]:
        late = {cpu for t, cpu in worker["residency"] if t > at + 1.0}
        assert late <= {0} and worker["residency"][-1][1] == 0, (at, worker["residency"])


def test_starve_cgroup_leaves_its_workers_stuck():
    # switched on once the workers run: a window before their first stamp would only
    # delay their start
    record = run("--write-knob-after=2:starve_cgroup=ktstr/cg_0,2500", duration=6)
    stuck = failures(record, "not_stuck")
    assert stuck and all("(cg_0)" in f["message"] for f in stuck), stuck
    assert not failures(record, "scheduler")


def test_pile_cgroup_overloads_one_cpu_while_the_others_stay_busy():
    # 8 spinners of hot on CPU 0, 3 of cool on the FIFO: CPU 0 carries 8 runnable tasks
    # and CPUs 1-3 one each, so no CPU is idle while a task waits
    scenario = Scenario(
        "pile_cgroup",
        "hot piled on one CPU, cool spread over the others",
        [
            Step(
                [
                    Op.add_cgroup(CgroupDef("hot", workers=8)),
                    Op.add_cgroup(CgroupDef("cool", workers=3)),
                ]
            )
        ],
        duration_s=6,
    )
    record, _ = run_scenario(
        scenario,
        TOPO,
        scheduler=SCX_KTSTR,
        extra_args=knob_args(pile_cgroup="ktstr/hot"),
    )
    lines = output(record)
    assert any(
        ln.startswith("scx_ktstr: knob pile_cgroup: cgroup ktstr/hot (id ")
        and ln.endswith("runs on CPU 0")
        for ln in lines
    ), lines
    hot = [w for w in record["workers"] if w["cgroup_path"] == "hot"]
    cool = [w for w in record["workers"] if w["cgroup_path"] == "cool"]
    assert len(hot) == 8 and len(cool) == 3
    for worker in hot:
        assert cpus_of(worker) == {0}, worker["cpus"]
        assert {cpu for _, cpu in worker["residency"]} == {0}
    # cool is scheduled as if no knob were set; CPU 0 stays full of hot's tasks, so it
    # runs on the other three
    assert set().union(*(cpus_of(w) for w in cool)) == {1, 2, 3}, [w["cpus"] for w in cool]

    (imbalanced,) = failures(record, "imbalance")
    assert imbalanced["kind"] == "imbalanced" and imbalanced["cpu"] == 0, imbalanced
    status = {f["check"]: f["status"] for f in record["findings"]}
    for check in ("work_conservation", "not_stuck", "isolation", "kernel_health", "scheduler"):
        assert status[check] == "pass", (check, record["findings"])
