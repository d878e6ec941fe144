"""not_stuck judges how long a worker waited in a gap, not how late its next stamp came."""

from ktstr.checks import judge
from ktstr.checks.not_stuck import waited


def spinner(gap_at: float, gap: float, ran_in_gap: float) -> dict:
    """A spinner stamping every 0.1 s at half a CPU, but for one gap in which the kernel
    charged it ``ran_in_gap`` seconds of CPU."""
    points, cpu_ns, at = [], 0, 0.0
    while at < 6.0:
        points.append([round(at, 6), len(points), 0, int(cpu_ns)])
        step = gap if abs(at - gap_at) < 1e-9 else 0.1
        cpu_ns += (ran_in_gap if step == gap else 0.05) * 1e9
        at += step
    return {
        "id": 0,
        "cgroup_path": "cg_0",
        "work": "spin",
        "units": len(points),
        "start_s": 0.0,
        "end_s": 6.0,
        "cpu_time_ns": int(cpu_ns),
        "wait_ns": 0,
        "migrations": 0,
        "gaps": [[gap, gap_at, 0], [0.1, 0.5, 0]],
        "residency": [[0.0, 0]],
        "progress": points,
        "cpus": {"0": len(points)},
        "wake": None,
        "error": None,
    }


def record(worker: dict) -> dict:
    return {
        "duration_s": 6.0,
        "workers": [worker],
        "console": [],
        "observed_topology": {"cpus": 1},
        "events": [{"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0]}],
    }


def not_stuck(rec: dict) -> list:
    return [f for f in judge(rec).findings if f.check == "not_stuck"]


def test_a_gap_the_worker_spent_mostly_on_a_cpu_is_not_a_stall():
    w = spinner(gap_at=2.0, gap=2.5, ran_in_gap=1.0)
    assert waited(w, 2.5, 2.0).longest == 1.5
    (f,) = not_stuck(record(w))
    assert f.status == "pass"
    assert (
        f.message
        == "longest wait 1500 ms (longest gap between stamps 2500 ms, part of it on a CPU)"
    )


def test_a_gap_without_cpu_time_counts_whole():
    (f,) = not_stuck(record(spinner(gap_at=2.0, gap=2.5, ran_in_gap=0.0)))
    assert f.status == "fail" and f.kind == "stuck" and f.value == 2500.0
    assert "stuck 2500 ms on cpu 0 at +2.0 s (limit 2000 ms)" in f.message


def test_a_long_wait_inside_a_longer_gap_fails_and_says_what_ran():
    (f,) = not_stuck(record(spinner(gap_at=2.0, gap=3.0, ran_in_gap=0.5)))
    assert f.status == "fail" and f.value == 2500.0
    assert "(limit 2000 ms; it ran 500 ms of a 3000 ms gap)" in f.message


def test_points_without_cpu_time_leave_the_gap_whole():
    w = spinner(gap_at=2.0, gap=2.5, ran_in_gap=1.0)
    w["progress"] = [p[:3] for p in w["progress"]]  # a record from before CPU times
    assert waited(w, 2.5, 2.0).longest == 2.5


def late_starter(released_cpu_ns: int | None) -> dict:
    """Released at 0 s, first stamp at 2.5 s, having run 1 s of it (by its CPU time)."""
    w = spinner(gap_at=4.0, gap=0.1, ran_in_gap=0.05)
    w["progress"] = [[p[0] + 2.5, p[1], p[2], p[3] + 1_000_000_000] for p in w["progress"]]
    w["start_s"], w["end_s"], w["gaps"] = 2.5, 8.5, [[0.1, 3.0, 0]]
    if released_cpu_ns is not None:
        w["released_cpu_ns"] = released_cpu_ns
    return w


def test_from_release_to_the_first_stamp_only_the_time_off_a_cpu_counts():
    rec = record(late_starter(released_cpu_ns=0))
    rec["duration_s"] = 8.5
    (f,) = not_stuck(rec)
    assert f.status == "pass" and f.value == 1500.0
    # without the CPU time it had when released, the whole 2.5 s counts
    rec["workers"] = [late_starter(released_cpu_ns=None)]
    (f,) = not_stuck(rec)
    assert f.status == "fail" and "stuck 2500 ms at +0.0 s" in f.message


def test_a_guest_gap_equal_to_the_tail_does_not_crash_the_check():
    w = spinner(gap_at=2.0, gap=0.1, ran_in_gap=0.05)
    w["end_s"] = 3.0
    w["gaps"] = [[3.0, 3.0, 1]]  # the same gap and time as the tail, with a CPU
    w["progress"] = [p for p in w["progress"] if p[0] < 2.9]  # nothing brackets it
    (f,) = not_stuck(record(w))
    assert f.status == "fail" and f.value == 3000.0


def gap_with_turns(gap: float, ran: float, turns: int) -> dict:
    """A spinner whose gap at 2 s carries the CPU time and preemptions between its stamps."""
    w = spinner(gap_at=2.0, gap=gap, ran_in_gap=ran)
    w["gaps"][0] += [ran, 0, turns]
    return w


def test_time_off_a_cpu_spread_over_many_turns_is_not_a_stall():
    # Under emulation one unit took 0.6 s of charged time: a fair share of a crowded
    # CPU gave a 2.8 s gap holding 2.2 s off a CPU in 20 turns.
    w = gap_with_turns(2.8, 0.6, 20)
    how = waited(w, 2.8, 2.0)
    assert (round(how.total, 3), how.turns, round(how.longest, 3)) == (2.2, 20, 0.11)
    (f,) = not_stuck(record(w))
    assert f.status == "pass"


def test_a_gap_in_which_it_slept_or_blocked_counts_whole():
    # a writer blocked 5 s on a frozen filesystem between writes and fsyncs
    w = gap_with_turns(2.8, 0.6, 20)
    w["gaps"][0][4] = 3
    (f,) = not_stuck(record(w))
    assert f.status == "fail" and f.value == 2200.0


def test_one_departure_and_a_long_time_off_a_cpu_is_a_stall():
    (f,) = not_stuck(record(gap_with_turns(2.8, 0.6, 1)))
    assert f.status == "fail" and f.value == 2200.0


def test_few_departures_still_prove_a_long_wait():
    (f,) = not_stuck(record(gap_with_turns(3.5, 0.1, 1)))
    assert f.status == "fail" and f.value == 3400.0
    w = spinner(gap_at=1.0, gap=4.6, ran_in_gap=0.2)
    w["gaps"][0] += [0.2, 0, 2]
    (f,) = not_stuck(record(w))
    assert f.status == "fail" and f.value == 2200.0
    assert "off a CPU 4400 ms in 2 turns" in f.message
