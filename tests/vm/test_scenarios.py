"""Scenarios in real VMs under EEVDF: correct runs pass, deliberate faults are caught."""

import json
from itertools import pairwise
from pathlib import Path

import pytest

from ktstr.checks.thresholds import DEFAULTS
from ktstr.scenario.cpuset import CpusetSpec
from ktstr.scenario.model import CgroupDef, HoldSpec, Op, Scenario, Step
from ktstr.topology import Topology
from tests.helpers import check_status, finish, ktstr

TOPO = "1n2l2c1t"


CPU_SCENARIOS = [
    "steady",
    "steady_llc",
    "oversubscribed",
    "cpuset_apply",
    "cpuset_clear",
    "cpuset_resize",
    "cgroup_add",
    "cgroup_remove",
    "affinity_change",
    "affinity_pinned",
    "mixed_workloads",
    "nested_steady",
    "nested_task_move",
    "weights",
    "wake_chain",
    "host_contention",
]


@pytest.mark.parametrize("name", CPU_SCENARIOS)
def test_catalog_scenario_passes_under_eevdf(name, tmp_path):
    out = tmp_path / "record.json"
    proc = ktstr("run", name, "--topology", TOPO, "--duration", "6", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"scenario {name} on {TOPO}: PASS" in proc.stdout
    record = json.loads(out.read_text())
    assert record["verdict"] == "pass"
    assert {f["check"] for f in record["findings"]} >= {"not_stuck", "isolation", "kernel_health"}
    assert all({"check", "status", "kind", "message"} <= set(f) for f in record["findings"])
    assert record["workers"] and all(w["units"] > 0 for w in record["workers"])
    assert record["calibration"]["dilation"] > 0
    if name == "weights":  # judged, not merely not failed
        assert any(f["kind"] == "weights_ok" for f in record["findings"]), record["findings"]
    run_dir = Path(proc.stdout.rsplit("run dir: ", 1)[1].strip())
    for name_ in ("record.json", "console.log", "channel.jsonl"):
        assert (run_dir / name_).exists()


def _run(scenario: Scenario):
    from ktstr.runner import run_scenario

    return run_scenario(scenario, Topology.parse(TOPO))


def test_stopped_worker_is_reported_stuck_with_worker_and_time():
    scenario = Scenario(
        "debug_stuck",
        "one worker SIGSTOPped for 3 s",
        [
            Step([Op.add_cgroup(CgroupDef("cg_0", workers=2))], HoldSpec(seconds=2)),
            Step([Op.debug_stop_worker("cg_0", 1, 3000)], HoldSpec(seconds=6)),
        ],
        duration_s=8,
    )
    record, run_dir = _run(scenario)
    assert record["verdict"] == "fail"
    stuck = [f for f in record["findings"] if f["check"] == "not_stuck" and f["status"] == "fail"]
    assert len(stuck) == 1, stuck
    finding = stuck[0]
    assert finding["kind"] == "stuck" and finding["worker"] == 1 and finding["cgroup"] == "cg_0"
    assert 2.5 <= finding["value"] / 1000 <= 6
    assert 1.5 <= finding["at_s"] <= 3.0
    assert "worker 1 (cg_0) stuck" in finding["message"] and "limit 2000 ms" in finding["message"]
    # Re-judged with a looser limit, the same record passes not_stuck: no boot needed.
    relaxed = ktstr("check", str(run_dir), "--set", "not_stuck.max_gap_ms=10000")
    assert check_status(relaxed.stdout, "not_stuck") == "PASS", relaxed.stdout


def test_worker_escaping_its_cpuset_is_reported_by_isolation():
    scenario = Scenario(
        "debug_escape",
        "one worker moved out of its cpuset",
        [
            Step(
                [Op.add_cgroup(CgroupDef("cg_0", workers=2, cpuset=CpusetSpec.disjoint(0, 2)))],
                HoldSpec(seconds=2),
            ),
            Step([Op.debug_escape_cpuset("cg_0", 0)], HoldSpec(seconds=4)),
        ],
        duration_s=6,
    )
    record, _ = _run(scenario)
    assert record["verdict"] == "fail"
    bad = [f for f in record["findings"] if f["check"] == "isolation" and f["status"] == "fail"]
    assert len(bad) == 1 and bad[0]["worker"] == 0 and bad[0]["cpu"] in (2, 3), bad
    assert bad[0]["at_s"] >= 1.5


def test_guest_kernel_crash_is_a_kernel_health_failure_with_evidence():
    scenario = Scenario(
        "debug_crash",
        "the guest kernel crashes mid-run",
        [
            Step([Op.add_cgroup(CgroupDef("cg_0", workers=2))], HoldSpec(seconds=2)),
            Step([Op.debug_kernel_crash()], HoldSpec(seconds=4)),
        ],
        duration_s=6,
    )
    record, run_dir = _run(scenario)
    assert record["verdict"] == "fail"
    health = {
        f["kind"]
        for f in record["findings"]
        if f["check"] == "kernel_health" and f["status"] == "fail"
    }
    assert "panic" in health
    assert any(f["check"] == "vm" and f["kind"] == "panic" for f in record["findings"])
    assert any("sysrq" in line for line in record["console"])
    assert (run_dir / "console.log").exists()


def test_every_work_kind_runs_and_progresses():
    from ktstr.scenario import work as w

    kinds = [
        w.spin(),
        w.yield_heavy(),
        w.mixed(),
        w.bursty(2, 2),
        w.pipe_pingpong(),
        w.futex_pingpong(),
        w.fan_out(1),
        w.cache_pressure(256, 64),
        w.fork_exit(),
        w.nice_sweep(),
        w.affinity_churn(),
        w.policy_churn(),
        w.page_fault_churn(256),
        w.mutex_contention(2),
        w.io_sync(),
        w.sequence([w.spin(), w.bursty(2, 2)]),
    ]
    defs = [
        CgroupDef(
            f"k{i}_{spec.kind}", workers=spec.group_size if spec.group_size > 1 else 1, work=spec
        )
        for i, spec in enumerate(kinds)
    ]
    scenario = Scenario(
        "all_kinds",
        "one cgroup per work kind",
        [Step([Op.add_cgroup(d) for d in defs])],
        duration_s=6,
    )
    record, _ = _run(scenario)
    by_kind = {}
    for worker in record["workers"]:
        assert worker.get("error") is None, worker
        assert worker["units"] > 0, worker
        by_kind.setdefault(worker["work"], []).append(worker)
    assert set(by_kind) == {spec.kind for spec in kinds}
    for kind in ("bursty", "pipe_pingpong", "futex_pingpong", "fan_out", "mutex_contention"):
        assert any(wk["wake"] and wk["wake"]["n"] > 0 for wk in by_kind[kind]), kind


GRACE_S = DEFAULTS["isolation.grace_ms"] / 1000


def _cpus_during(residency: list, start: float, end: float) -> set[int]:
    """The CPUs a worker was on between two times, from its [since, cpu] changes."""
    current, seen = None, set()
    for at, cpu in residency:
        if at <= start:
            current = cpu
        elif at <= end:
            seen.add(cpu)
    return seen | ({current} if current is not None else set())


def test_every_op_takes_effect_in_the_guest():
    from ktstr.scenario.model import BATCH, RR, Checks
    from ktstr.scenario.work import bursty

    llc0, llc1 = CpusetSpec.llc(0), CpusetSpec.llc(1)
    sleeper = bursty(1, 19)  # real-time workers must not hog a CPU
    scenario = Scenario(
        "every_op",
        "each op once, a loop that swaps and spawns, a freeze longer than the gap limit",
        [
            Step(
                [
                    Op.add_cgroup(CgroupDef("a", cpuset=llc0, nice=5)),
                    Op.add_cgroup(CgroupDef("b", cpuset=llc1, policy=BATCH)),
                    Op.add_cgroup(
                        CgroupDef(
                            "c",
                            workers=1,
                            work=sleeper,
                            policy=RR(5),
                            affinity=CpusetSpec.exact({3}),
                        )
                    ),
                ],
                HoldSpec(seconds=1.5),
            ),
            Step(
                [Op.swap_cpusets("a", "b"), Op.spawn_workers("c", 1, sleeper)],
                HoldSpec(seconds=3, loop_interval_s=1),
            ),
            Step(
                [
                    Op.set_weight("a", 500),
                    Op.set_affinity("c", CpusetSpec.exact({2})),
                    Op.stop_workers("c", 2),
                    Op.freeze("b"),
                ],
                HoldSpec(seconds=2.5),
            ),
            Step(
                [Op.unfreeze("b"), Op.clear_cpuset("a"), Op.move_tasks("c", "a")],
                HoldSpec(seconds=1.5),
            ),
            Step([Op.remove_cgroup("c")], HoldSpec(seconds=1.5)),
        ],
        duration_s=10,
        # Which CPU the RT sleepers share with which spinners changes every second
        # here, so equal shares are not expected; the catalog's scenarios judge fairness.
        checks=Checks(fairness=False),
    )
    record, _ = _run(scenario)
    assert record["verdict"] == "pass", record["findings"]
    events = record["events"]
    workers = {w["id"]: w for w in record["workers"]}
    assert sorted(workers) == list(range(8))  # a: 0-1, b: 2-3, c: 4 and one per loop round

    swaps = [e["cpus"] for e in events if e["op"] == "set_cpuset" and e["path"] == "a"]
    assert swaps == [[2, 3], [0, 1], [2, 3], [0, 1, 2, 3]]  # three swaps, then cleared
    spawn_times = [e["at_s"] for e in events if e["op"] == "spawn" and e["path"] == "c"]
    assert len(spawn_times) == 4 and spawn_times[1:] == sorted(spawn_times[1:])
    # The loop waits its interval between rounds and its three rounds fit in its step,
    # ordered against the guest's own events rather than bounded by the clock.
    assert all(b - a >= 0.9 for a, b in pairwise(spawn_times[1:]))

    assert all(workers[i]["nice"] == 5 for i in (0, 1))
    assert all(workers[i]["policy"] == "batch" for i in (2, 3))
    assert all(
        workers[i]["policy"] == "rr" and workers[i]["rt_priority"] == 5 for i in (4, 5, 6, 7)
    )

    (weight,) = [e for e in events if e["op"] == "set_weight"]
    assert weight["path"] == "a" and weight["weight"] == 500
    assert spawn_times[-1] < weight["at_s"]  # the loop's rounds ended with their step
    (stop,) = [e for e in events if e["op"] == "stop_workers"]
    (thaw,) = [e for e in events if e["op"] == "unfreeze"]
    (removed,) = [e for e in events if e["op"] == "remove_cgroup" and e["path"] == "c"]
    assert stop["ids"] == [6, 7]
    # Stopped workers end within their step; the others outlive c's removal (moved to a).
    assert all(workers[i]["end_s"] <= thaw["at_s"] for i in (6, 7))
    assert all(workers[i]["end_s"] >= removed["at_s"] for i in (4, 5))

    (pin,) = [e for e in events if e["op"] == "set_affinity"]
    assert pin["ids"] == [4, 5, 6, 7]
    for i in (4, 5):
        residency = workers[i]["residency"]
        before = _cpus_during(residency, 0.0, pin["at_s"])
        # the kernel moves a pinned task within the grace isolation allows it
        after = _cpus_during(residency, pin["at_s"] + GRACE_S, 10.0)
        assert before == {3} and after == {2}, residency
        assert workers[i]["cgroup"] == "/ktstr/a"  # moved, then c was removed

    (freeze,) = [e for e in events if e["op"] == "freeze"]
    assert thaw["at_s"] - freeze["at_s"] >= 2.0
    longest = max(g[0] for i in (2, 3) for g in workers[i]["gaps"])
    assert longest >= 2.0  # past the gap limit, yet not_stuck passed: the freeze was on purpose
    assert [e["op"] for e in events if e["path"] == "c"][-1] == "remove_cgroup"


def test_gauntlet_cli_runs_variants_and_prints_the_matrix():
    presets = "tiny-2llc,tiny-smt,tiny-1llc"
    proc = ktstr("gauntlet", "steady", "--presets", presets, "--duration", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gauntlet: 3 variants" in proc.stdout
    assert "steady[tiny-2llc]: PASS" in proc.stdout and "steady[tiny-smt]: PASS" in proc.stdout
    matrix = proc.stdout.split("\n\n")[-2]
    assert matrix.splitlines()[0].split() == ["scenario", *presets.split(",")]
    assert matrix.splitlines()[1].split() == ["steady", "pass", "pass", "pass"]
    simple = ktstr(
        "gauntlet",
        "steady",
        "--scheduler",
        "scx_simple",
        "--presets",
        "tiny-2llc,tiny-smt",
        "--duration",
        "4",
    )
    assert simple.returncode == 0, simple.stdout + simple.stderr
    assert "steady[tiny-2llc/default]: PASS" in simple.stdout
    assert "steady[tiny-smt/default]: PASS" in simple.stdout


def test_gauntlet_sigint_stops_every_vm_and_keeps_finished_records(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.vm.conftest import qemu_pids_for

    env = dict(__import__("os").environ, KTSTR_RUNS_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ktstr.cli",
            "gauntlet",
            "steady",
            "--presets",
            "tiny-2llc,tiny-smt,tiny-1llc,odd-3llc",
            "-j",
            "2",
            "--duration",
            "6",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = ""
    for line in proc.stdout:
        if line.startswith("[1/4]"):
            first = line
            break
    assert first, "no variant finished"
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    finished = first.rsplit("(", 1)[1].rstrip(")\n")
    assert (Path(finished) / "record.json").exists()
    assert not qemu_pids_for(str(tmp_path))
    assert not list(tmp_path.glob("*/initrd.cpio"))
