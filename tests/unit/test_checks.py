"""Checks over hand-built records: each failure mode, and the edge cases."""

import pytest

from ktstr.checks import judge, parse_overrides
from ktstr.errors import ConfigError

DATA = __import__("pathlib").Path(__file__).parent.parent / "data"


def worker(
    wid,
    path="cg_0",
    units=100,
    cpu_s=5.0,
    start=0.0,
    end=6.0,
    gaps=None,
    work="spin",
    residency=None,
    **extra,
):
    return {
        "id": wid,
        "cgroup_path": path,
        "work": work,
        "units": units,
        "start_s": start,
        "end_s": end,
        "cpu_time_ns": int(cpu_s * 1e9),
        "wait_ns": 0,
        "migrations": 0,
        "gaps": gaps or [[0.05, 1.0, 0]],
        "residency": residency or [[0.0, 0]],
        "cpus": {"0": units},
        "wake": None,
        "error": None,
        **extra,
    }


def record(workers, events=None, console=None, cpus=4, duration=6.0):
    return {
        "duration_s": duration,
        "workers": workers,
        "console": console or [],
        "observed_topology": {"cpus": cpus},
        "events": events
        or [
            {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": None},
            {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [w["id"] for w in workers]},
        ],
    }


def findings(rec, check, status=None, kind=None, **th):
    verdict = judge(rec, th or None)
    return [
        f
        for f in verdict.findings
        if f.check == check and status in (None, f.status) and kind in (None, f.kind)
    ]


def test_clean_record_passes():
    rec = record([worker(0), worker(1)])
    assert judge(rec).status == "pass"


def test_stuck_worker_named_with_cpu_time_and_limit():
    rec = record([worker(0), worker(1, gaps=[[2.31, 4.1, 2], [0.1, 1.0, 2]])])
    (f,) = findings(rec, "not_stuck", "fail")
    assert f.worker == 1 and f.cpu == 2 and f.at_s == 4.1
    assert f.message == "worker 1 (cg_0) stuck 2310 ms on cpu 2 at +4.1 s (limit 2000 ms)"
    assert not findings(rec, "not_stuck", "fail", **{"not_stuck.max_gap_ms": 3000})


def test_worker_that_stopped_early_is_stuck_at_the_tail():
    rec = record([worker(0), worker(1, end=2.0)])
    (f,) = findings(rec, "not_stuck", "fail")
    assert f.worker == 1 and f.value == pytest.approx(4000)


def test_freeze_window_excuses_gap_but_not_others():
    events = record([])["events"] + [
        {"at_s": 1.0, "op": "freeze", "path": "cg_0"},
        {"at_s": 4.0, "op": "unfreeze", "path": "cg_0"},
    ]
    rec = record([worker(0, gaps=[[3.0, 1.0, 0]])], events=events)
    assert not findings(rec, "not_stuck", "fail")
    rec = record([worker(0, gaps=[[3.0, 4.5, 0]], end=6.0)], events=events, duration=9.0)
    assert findings(rec, "not_stuck", "fail")


def test_no_progress_and_worker_error():
    rec = record([worker(0, units=0), worker(1, error="OSError: boom")])
    kinds = {f.kind for f in findings(rec, "not_stuck", "fail")}
    assert kinds == {"no_progress", "worker_error"}


def test_zero_workers_is_inconclusive():
    assert judge(record([])).status == "inconclusive"


def test_fairness_spread_and_single_worker():
    # two spinners sharing one CPU, one given far more of it than the other
    rec = record([worker(0, cpu_s=5.9), worker(1, cpu_s=4.0)], cpus=1)
    (f,) = findings(rec, "fairness", "fail")
    assert f.kind == "unfair" and f.value == pytest.approx(31.67, abs=0.1)
    # the same two with a CPU each do not compete: what they lost went to other tasks
    (alone,) = findings(record([worker(0, cpu_s=5.9), worker(1, cpu_s=4.0)]), "fairness")
    assert alone.status == "skip" and "(1 had a CPU each)" in alone.message
    (skip,) = findings(record([worker(0)]), "fairness")
    assert skip.status == "skip"


def test_all_idle_workers_are_not_judged_for_fairness():
    rec = record([worker(0, work="bursty"), worker(1, work="bursty")])
    assert findings(rec, "fairness")[0].status == "skip"
    idle = record([worker(0, cpu_s=0), worker(1, cpu_s=0)])  # spinners that never ran
    (f,) = findings(idle, "fairness")
    assert f.status == "inconclusive" and f.kind == "bad_data"


def test_weights_proportional_when_contended():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": [0, 1], "weight": 100},
        {"at_s": 0.0, "op": "add_cgroup", "path": "b", "cpus": [0, 1], "weight": 300},
        {"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0, 1]},
        {"at_s": 0.0, "op": "spawn", "path": "b", "ids": [2, 3]},
    ]
    good = [
        worker(0, "a", cpu_s=1.5),
        worker(1, "a", cpu_s=1.5),
        worker(2, "b", cpu_s=4.5),
        worker(3, "b", cpu_s=4.5),
    ]
    assert not findings(record(good, events, cpus=2), "fairness", "fail")
    (judged,) = findings(record(good, events, cpus=2), "fairness", "pass", kind="weights_ok")
    assert judged.message == "cpu.weight 100:300 got 25%:75% of the CPU time, expected 25%:75%"
    bad = [
        worker(0, "a", cpu_s=3),
        worker(1, "a", cpu_s=3),
        worker(2, "b", cpu_s=3),
        worker(3, "b", cpu_s=3),
    ]
    kinds = {f.kind for f in findings(record(bad, events, cpus=2), "fairness", "fail")}
    assert kinds == {"weight_mismatch"}


def test_isolation_escape_and_grace_after_cpuset_change():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": [0, 1]},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0]},
        {"at_s": 3.0, "op": "set_cpuset", "path": "cg_0", "cpus": [2, 3]},
    ]
    ok = record([worker(0, residency=[[0.0, 0], [3.1, 1], [3.5, 2]])], events)
    assert not findings(ok, "isolation", "fail")
    bad = record([worker(0, residency=[[0.0, 0], [1.0, 3]])], events)
    (f,) = findings(bad, "isolation", "fail")
    assert f.worker == 0 and f.cpu == 3 and f.at_s == 1.0


def test_isolation_follows_moves_between_cgroups():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": [0]},
        {"at_s": 0.0, "op": "add_cgroup", "path": "b", "cpus": [1]},
        {"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0]},
        {"at_s": 2.0, "op": "move_tasks", "path": "a", "dst": "b", "cpus": [1]},
    ]
    rec = record([worker(0, "b", residency=[[0.0, 0], [2.1, 1]])], events)
    assert not findings(rec, "isolation", "fail")


def test_kernel_health_on_a_real_oops_log_and_allow_list():
    console = (DATA / "console-oops-int3.log").read_text().splitlines()
    rec = record([worker(0)], console=console)
    kinds = {f.kind for f in findings(rec, "kernel_health", "fail")}
    assert {"oops", "panic"} <= kinds
    rec["kernel_allow"] = [r"Oops: int3", r"Kernel panic", r"Fatal exception"]
    assert not findings(rec, "kernel_health", "fail")


def test_kernel_health_warning_and_stalls():
    console = [
        "[   12.5] WARNING: CPU: 1 PID: 7 at kernel/sched/core.c:123 f+0x1/0x2",
        "[   30.1] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        "[   40.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!",
        "[   50.0] INFO: task kworker:1 blocked for more than 120 seconds.",
    ]
    kinds = {f.kind for f in findings(record([worker(0)], console=console), "kernel_health")}
    assert {"warning", "rcu_stall", "soft_lockup", "bug", "hung_task"} <= kinds


def test_overrides_validated():
    assert parse_overrides(["not_stuck.max_gap_ms=500"]) == {"not_stuck.max_gap_ms": 500.0}
    for bad in (
        ["nope=1"],
        ["not_stuck.max_gap_ms=abc"],
        ["not_stuck.max_gap_ms=nan"],
        ["not_stuck.max_gap_ms"],
    ):
        with pytest.raises(ConfigError):
            parse_overrides(bad)


def test_skipped_record_and_stored_record_round_trip(tmp_path, monkeypatch):
    from ktstr import record as stored
    from ktstr import runner

    assert judge({"skipped": "steady_llc needs at least 2 LLCs"}).status == "skip"
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(tmp_path))
    full = record([worker(0), worker(1, gaps=[[2.5, 3.0, 1]])])
    full["schema"] = stored.SCHEMA
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runner.save(full, run_dir)
    loaded, where = stored.load(run_dir)
    assert loaded == full and where == run_dir
    assert judge(loaded).findings == judge(full).findings
    assert judge(loaded).status == "fail"


def test_nan_or_infinite_numbers_are_refused_in_every_check():
    for field, value in [
        ("units", float("nan")),
        ("cpu_time_ns", float("inf")),
        ("cpu_time_ns", float("nan")),
        ("end_s", float("nan")),
        ("gaps", [[float("nan"), 1.0, 0]]),
        ("wake", {"p50_us": 10.0, "p99_us": float("nan"), "max_us": 50.0}),
        ("residency", [[0.0, -1]]),
        ("progress", [[float("nan"), 3, 0]]),
    ]:
        rec = record([worker(0), worker(1, **{field: value})])
        verdict = judge(rec)
        (bad,) = [f for f in verdict.findings if f.kind == "bad_data"]
        assert verdict.status == "inconclusive", field
        assert bad.worker == 1 and field in bad.message
        assert not [f for f in verdict.findings if f.status == "fail"], field


def test_calibration_missing_makes_a_run_inconclusive():
    rec = record([worker(0), worker(1)])
    rec["calibration"] = {"guest_loop_s": 0.2, "host_loop_s": 0.01, "dilation": 20.0}
    assert judge(rec).status == "pass"
    for missing in (None, float("nan"), 0.0):
        rec["calibration"] = {"guest_loop_s": missing, "host_loop_s": 0.01, "dilation": None}
        (f,) = findings(rec, "calibration", "inconclusive")
        assert f.kind == "uncalibrated" and judge(rec).status == "inconclusive"


def test_optional_checks_judge_each_worker_against_their_limits():
    rec = record(
        [
            worker(0, units=100, migrations=5, wake={"p50_us": 50, "p99_us": 900, "max_us": 990}),
            worker(1, units=100, migrations=50, wake={"p50_us": 50, "p99_us": 90, "max_us": 99}),
        ]
    )
    assert judge(rec).status == "pass"  # all three are off by default
    limits = {
        "max_migration_ratio.limit": 0.1,
        "max_p99_wake_latency_us.limit": 500,
        "min_work_rate.limit": 20,
    }
    (mig,) = findings(rec, "max_migration_ratio", "fail", **limits)
    assert mig.worker == 1 and mig.value == pytest.approx(0.5) and mig.limit == 0.1
    (lat,) = findings(rec, "max_p99_wake_latency_us", "fail", **limits)
    assert lat.worker == 0 and lat.value == 900
    slow = findings(rec, "min_work_rate", "fail", **limits)  # 100 units in 6 s
    assert {f.worker for f in slow} == {0, 1} and slow[0].value == pytest.approx(100 / 6)
    limits["min_work_rate.limit"] = 10
    assert not findings(rec, "min_work_rate", "fail", **limits)


def test_isolation_honours_affinity_given_at_spawn_and_set_later():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": None},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0], "affinity": [1]},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [1], "affinity": None},
    ]
    pinned = record([worker(0, residency=[[0.0, 1], [2.0, 3]]), worker(1)], events)
    (f,) = findings(pinned, "isolation", "fail")
    assert f.worker == 0 and f.cpu == 3
    later = events + [{"at_s": 3.0, "op": "set_affinity", "path": "cg_0", "cpus": [2], "ids": [1]}]
    rec = record([worker(0), worker(1, residency=[[0.0, 3], [3.2, 2], [4.0, 0]])], later)
    (f,) = findings(rec, "isolation", "fail")
    assert f.worker == 1 and f.cpu == 0 and f.at_s == 4.0


def test_isolation_sees_a_worker_left_running_on_a_cpu_its_cpuset_lost():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": [2, 3]},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0]},
        {"at_s": 3.0, "op": "set_cpuset", "path": "cg_0", "cpus": [0, 1]},
    ]
    # It never moved, so residency alone says nothing after 0 s; its progress points do.
    progress = [[0.0, 0, 2], [1.0, 10, 2], [3.1, 30, 2], [3.6, 40, 2]]
    rec = record([worker(0, residency=[[0.0, 2]], progress=progress)], events)
    (f,) = findings(rec, "isolation", "fail")
    assert f.worker == 0 and f.cpu == 2 and f.at_s == 3.6  # 3.1 is within the grace
    progress[-1] = [3.6, 40, 0]
    assert not findings(rec, "isolation", "fail")


def test_isolation_allows_the_old_cpuset_until_the_write_returned():
    # The kernel moves a cgroup's tasks one by one before a cpuset write returns;
    # under emulation that took 0.5 s on 16 vCPUs, past the grace.
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": [0, 1, 2, 3]},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0]},
        {"at_s": 3.0, "done_s": 3.5, "op": "set_cpuset", "path": "cg_0", "cpus": [0, 1]},
    ]
    progress = [[0.0, 0, 3], [3.4, 30, 3], [3.8, 40, 0]]
    rec = record([worker(0, residency=[[0.0, 3], [3.8, 0]], progress=progress)], events)
    assert not findings(rec, "isolation", "fail")
    progress.insert(2, [3.8, 35, 3])  # after the write returned and the grace: an escape
    (f,) = findings(rec, "isolation", "fail")
    assert f.cpu == 3 and f.at_s == 3.8


def test_isolation_follows_the_kernel_when_affinity_and_cpuset_do_not_meet():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": [0, 1]},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0], "affinity": [0]},
        {"at_s": 3.0, "op": "set_cpuset", "path": "cg_0", "cpus": [2, 3]},
    ]
    # Affinity {0} and cpuset {2, 3} share nothing: the kernel runs it on the cpuset.
    rec = record([worker(0, residency=[[0.0, 0], [3.1, 3], [4.0, 2]])], events)
    assert not findings(rec, "isolation", "fail")
    rec = record([worker(0, residency=[[0.0, 0], [1.0, 1]])], events)  # affinity still binds
    (f,) = findings(rec, "isolation", "fail")
    assert f.cpu == 1 and f.at_s == 1.0


def test_isolation_gives_a_move_between_cgroups_its_grace():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": [0]},
        {"at_s": 0.0, "op": "add_cgroup", "path": "b", "cpus": [1]},
        {"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0]},
        {"at_s": 2.0, "op": "move_tasks", "path": "a", "dst": "b", "cpus": [1]},
    ]
    progress = [[1.9, 10, 0], [2.05, 12, 0], [2.2, 14, 1]]  # still on 0 just after the stamp
    rec = record([worker(0, "b", residency=[[0.0, 0], [2.2, 1]], progress=progress)], events)
    assert not findings(rec, "isolation", "fail")
    progress.append([2.6, 16, 0])  # back on a's CPU well after the move
    (f,) = findings(rec, "isolation", "fail")
    assert f.cpu == 0 and f.at_s == 2.6


def test_isolation_without_residency_is_inconclusive():
    rec = record([worker(0), worker(1)])
    for w in rec["workers"]:
        w["residency"] = []
    (f,) = findings(rec, "isolation")
    assert f.status == "inconclusive" and f.kind == "no_data"


def test_a_worker_starved_from_its_release_to_its_first_stamp_is_stuck():
    late = worker(1, start=2.6, gaps=[[0.05, 3.0, 0]])
    rec = record([worker(0), late])
    rec["events"].append({"at_s": 0.0, "op": "start", "path": None})
    (f,) = findings(rec, "not_stuck", "fail")
    assert f.kind == "stuck" and f.worker == 1 and f.at_s == 0.0 and f.value == 2600.0
    rec["workers"][1] = worker(1, start=0.4)
    assert not findings(rec, "not_stuck", "fail")


def test_equal_weight_siblings_share_equally_when_they_lived_the_whole_run():
    def two_cgroups(a_cpu_s, b_cpu_s, extra_events=()):
        workers = [worker(i, path="a", cpu_s=a_cpu_s) for i in range(4)]
        workers += [worker(i + 4, path="b", cpu_s=b_cpu_s) for i in range(4)]
        events = [
            {"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": None},
            {"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0, 1, 2, 3]},
            {"at_s": 0.0, "op": "add_cgroup", "path": "b", "cpus": None},
            {"at_s": 0.0, "op": "spawn", "path": "b", "ids": [4, 5, 6, 7]},
            *extra_events,
        ]
        return record(workers, events=events, cpus=4)

    fair = [f for f in findings(two_cgroups(3.0, 3.0), "fairness") if f.kind == "weights_ok"]
    assert fair and "cpu.weight 100:100 got 50%:50%" in fair[0].message
    unfair = findings(two_cgroups(4.5, 1.5), "fairness", "fail")
    assert {f.kind for f in unfair} == {"weight_mismatch"}
    assert "cgroup a (cpu.weight 100) got 75% of its siblings' CPU time, expected 50%" in (
        unfair[0].message
    )
    # setup that took emulated time still counts as the start, up to the start gate
    slow = two_cgroups(4.5, 1.5)
    for ev in slow["events"][2:]:
        ev["at_s"] = 0.7
    slow["events"].append({"at_s": 1.5, "op": "start", "path": None})
    assert {f.kind for f in findings(slow, "fairness", "fail")} == {"weight_mismatch"}
    # a cgroup changed during the run (here: half its workers stopped) is not compared
    stop = {"at_s": 3.0, "op": "stop_workers", "path": "b", "n": 2, "ids": [6, 7]}
    assert not findings(two_cgroups(4.5, 1.5, [stop]), "fairness", "fail")
    # real-time workers do not follow cpu.weight
    rt = two_cgroups(4.5, 1.5)
    for w in rt["workers"][:4]:
        w["policy"] = "fifo"
    assert not [f for f in findings(rt, "fairness") if f.kind == "weight_mismatch"]
