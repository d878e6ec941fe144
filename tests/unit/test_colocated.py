"""Fairness on shared CPUs: placement explains a spread, unequal sharing does not."""

import pytest

from ktstr.checks import colocated, judge

DURATION = 12.0
STEP = 0.1  # a progress point every tenth of a second, as the guest takes them


def spinner(wid: int, cpu: int, rate: float, moves_every: int = 0, path: str = "cg_0") -> dict:
    """A spinner on ``cpu`` the whole run at ``rate`` CPU s per s (or moving every few points)."""
    points, residency, where = [], [[0.0, cpu]], cpu
    n = int(DURATION / STEP)
    for i in range(n + 1):
        at = round(i * STEP, 6)
        if moves_every and i and i % moves_every == 0:
            where = where + 1
            residency.append([at, where])
        points.append([at, i, where, int(rate * at * 1e9)])
    return {
        "id": wid,
        "cgroup_path": path,
        "work": "spin",
        "units": n,
        "start_s": 0.0,
        "end_s": DURATION,
        "cpu_time_ns": int(rate * DURATION * 1e9),
        "wait_ns": int((1 - rate) * DURATION * 1e9),
        "migrations": len(residency) - 1,
        "gaps": [[0.05, 1.0, cpu]],
        "residency": residency,
        "progress": points,
        "cpus": {str(cpu): n},
        "wake": None,
        "error": None,
    }


def record(workers: list[dict], cpus: int) -> dict:
    return {
        "duration_s": DURATION,
        "workers": workers,
        "console": [],
        "observed_topology": {"cpus": cpus},
        "events": [
            {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": None},
            {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [w["id"] for w in workers]},
        ],
    }


def fairness(rec: dict) -> list:
    return [f for f in judge(rec).findings if f.check == "fairness"]


def test_equal_sharing_gives_every_worker_a_ratio_of_one():
    found = colocated.compare([spinner(0, 0, 0.5), spinner(1, 0, 0.5)])
    assert {w: round(s.ratio, 3) for w, s in found.items()} == {0: 1.0, 1: 1.0}
    assert found[0].shared_s == pytest.approx(DURATION, abs=STEP)


def test_twice_the_time_on_a_shared_cpu_gives_ratios_2_and_0_5():
    found = colocated.compare([spinner(0, 0, 2 / 3), spinner(1, 0, 1 / 3)])
    assert found[0].ratio == pytest.approx(2.0, rel=0.01)
    assert found[1].ratio == pytest.approx(0.5, rel=0.01)


def test_workers_on_different_cpus_share_nothing():
    assert colocated.compare([spinner(0, 0, 1.0), spinner(1, 1, 1.0)]) == {}


def test_a_stretch_with_a_move_inside_is_not_used():
    mover = spinner(0, 0, 0.5, moves_every=2)  # on a new CPU every 0.2 s
    # none of its stretches crosses a move
    moves = [at for at, _ in mover["residency"][1:]]
    assert colocated.stretches(mover)
    assert not any(s.start_s < at < s.end_s for s in colocated.stretches(mover) for at in moves)


def test_old_three_item_points_give_no_stretches():
    w = spinner(0, 0, 0.5)
    w["progress"] = [p[:3] for p in w["progress"]]
    assert colocated.stretches(w) == []


def test_a_spread_from_placement_alone_passes_and_says_so():
    # three spinners on CPU 0 and two on CPU 1: off-CPU shares 67 % and 50 %, 16.7 points
    # apart, yet each CPU is shared equally
    rec = record([spinner(i, 0, 1 / 3) for i in range(3)] + [spinner(i, 1, 0.5) for i in (3, 4)], 2)
    (f,) = fairness(rec)
    assert f.status == "pass", f.message
    assert "16.7 points by placement" in f.message and "ratio 1.00" in f.message


def test_a_worker_alone_on_its_cpu_is_placement_and_the_rest_are_compared():
    # three spinners share CPU 0 and two CPU 1 equally; one has CPU 2 to itself: it never
    # shares, so it cannot be compared, and its luck is placement's
    rec = record(
        [spinner(i, 0, 1 / 3) for i in range(3)]
        + [spinner(i, 1, 0.5) for i in (3, 4)]
        + [spinner(5, 2, 1.0)],
        3,
    )
    (f,) = fairness(rec)
    assert f.status == "pass", f.message
    assert "66.7 points by placement" in f.message
    assert "worker 5 hardly shared a CPU with a comparable co-runner" in f.message
    # ... but unequal sharing among the others still fails
    rec["workers"][:2] = [spinner(0, 0, 0.5), spinner(1, 0, 0.2)]
    (f,) = [f for f in fairness(rec) if f.status == "fail"]
    assert "sharing a CPU" in f.message


def test_unequal_sharing_on_a_cpu_fails_even_beside_placement():
    workers = [spinner(i, 0, 1 / 3) for i in range(3)] + [
        spinner(3, 1, 2 / 3),
        spinner(4, 1, 1 / 3),
    ]
    (f,) = fairness(record(workers, 2))
    assert f.status == "fail" and f.kind == "unfair"
    assert "sharing a CPU, worker 4 ran 0.50x and worker 3 2.00x" in f.message
    assert "ratio 4.00, limit 2.5" in f.message


def test_workers_that_never_stay_on_a_cpu_are_judged_on_the_whole_run():
    # a global queue moves them every slice: nothing to compare on a shared CPU, so the
    # whole-run spread decides (placement cannot explain it with one queue)
    workers = [spinner(0, 0, 0.6, moves_every=1), spinner(1, 0, 0.4, moves_every=1)]
    (f,) = fairness(record(workers, 1))
    assert f.status == "fail" and "too little time sharing a CPU" in f.message


def test_unequal_sharing_hidden_in_a_small_spread_still_fails():
    # a pair split 2:1 on a CPU that other tasks take most of: 13 points apart, within the
    # whole-run limit, yet one gets twice the other's time whenever they share the CPU
    (f,) = fairness(record([spinner(0, 0, 0.26), spinner(1, 0, 0.13)], 1))
    assert f.status == "fail" and f.kind == "unfair"
    assert "within the limit" in f.message and "ratio 4.00" in f.message


def placed(wid: int, path: str, legs: list[tuple[float, int, float]]) -> dict:
    """A spinner that spends each leg (until, cpu, rate) on one CPU at one rate."""
    points, residency, at, cpu_s, start = [], [], 0.0, 0.0, 0.0
    for until, cpu, rate in legs:
        residency.append([round(start, 6), cpu])
        while at < until - 1e-9 or (at <= until + 1e-9 and until == legs[-1][0]):
            points.append([round(at, 6), len(points), cpu, int(cpu_s * 1e9)])
            at, cpu_s = at + STEP, cpu_s + STEP * rate
        start = until
    w = spinner(wid, legs[0][1], 0.5, path=path)
    w.update(residency=residency, progress=points, cpu_time_ns=points[-1][3])
    w["wait_ns"] = int(DURATION * 1e9) - w["cpu_time_ns"]
    return w


def weighted(workers: list[dict]) -> dict:
    rec = record(workers, 2)
    rec["events"] = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "heavy", "cpus": None, "weight": 300},
        {"at_s": 0.0, "op": "add_cgroup", "path": "light", "cpus": None, "weight": 100},
        {"at_s": 0.0, "op": "spawn", "path": "heavy", "ids": [0, 1]},
        {"at_s": 0.0, "op": "spawn", "path": "light", "ids": [2, 3]},
    ]
    return rec


def test_weights_off_by_placement_pass_when_shared_cpus_follow_the_weights():
    # 3 s with a heavy and a light task on each CPU (3:1 there), then 9 s with the heavy
    # ones on CPU 0 and the light ones on CPU 1: whole-run 56 %:44 % against 75 %:25 %
    heavy = [placed(i, "heavy", [(3.0, i, 0.75), (DURATION, 0, 0.5)]) for i in (0, 1)]
    light = [placed(i, "light", [(3.0, i - 2, 0.25), (DURATION, 1, 0.5)]) for i in (2, 3)]
    weights = [f for f in fairness(weighted(heavy + light)) if f.kind.startswith("weight")]
    assert [f.status for f in weights] == ["pass"], weights
    assert (
        "by placement; sharing a CPU, heavy:light tasks 3.00, expected 3.00" in weights[0].message
    )


def test_weights_judged_where_tasks_met_when_one_sat_alone_on_a_cpu():
    # both heavy tasks and a light one share CPU 0 by weight (3:3:1) all run; the other
    # light one has CPU 1 to itself and meets no heavy task: whole-run light 57 %
    # against 25 %, placement's
    heavy = [placed(i, "heavy", [(DURATION, 0, 3 / 7)]) for i in (0, 1)]
    light = [placed(2, "light", [(DURATION, 0, 1 / 7)]), placed(3, "light", [(DURATION, 1, 1.0)])]
    rec = weighted(heavy + light)
    weights = [f for f in fairness(rec) if f.kind.startswith("weight")]
    assert [f.status for f in weights] == ["pass"], weights
    assert "sharing a CPU, heavy:light tasks 3.00, expected 3.00" in weights[0].message


def test_weights_ignored_on_shared_cpus_fail():
    # the same placement, but a heavy and a light task share a CPU equally
    heavy = [placed(i, "heavy", [(3.0, i, 0.5), (DURATION, 0, 0.5)]) for i in (0, 1)]
    light = [placed(i, "light", [(3.0, i - 2, 0.5), (DURATION, 1, 0.5)]) for i in (2, 3)]
    weights = [f for f in fairness(weighted(heavy + light)) if f.kind.startswith("weight")]
    assert weights and {f.status for f in weights} == {"fail"}, weights
    assert "sharing a CPU, heavy:light tasks 1.00, expected 3.00 (off by 67%" in weights[0].message


def test_dense_or_backward_points_from_a_hostile_guest_are_thinned():
    # 200 000 points that jump back and forth in time: only increasing ones, at least
    # MIN_STEP_S apart, make stretches, so the host's work is bounded by the run's length
    w = spinner(0, 0, 0.5)
    w["progress"] = [[(i % 2) * DURATION + i * 1e-6, i, 0, i * 1000] for i in range(200_000)]
    assert len(colocated.stretches(w)) <= DURATION / colocated.MIN_STEP_S
    dense = spinner(1, 0, 0.5)
    dense["progress"] = [[i * 1e-4, i, 0, i * 50_000] for i in range(120_000)]  # 12 s
    assert len(colocated.stretches(dense)) <= DURATION / colocated.MIN_STEP_S + 1


def test_a_rate_above_one_cpu_is_a_clock_jump_and_is_capped():
    w = spinner(0, 0, 0.5)
    w["progress"][5][3] = w["progress"][4][3] + int(0.44e9)  # 0.44 s of CPU in 0.1 s
    assert max(s.rate for s in colocated.stretches(w)) == 1.0


def test_co_runners_from_a_sibling_cgroup_count_when_they_compete_alike():
    # two cgroups of three spinners: CPU 0 holds a0 and b0 (half each), CPU 1 the other
    # four (a quarter each).  a0 shares a CPU only with b0 of the other cgroup: it is
    # compared with it (same weight per task), and placement explains both spreads
    def two_cgroups(a0_rate: float) -> dict:
        workers = [
            spinner(0, 0, a0_rate, path="cg_0"),
            spinner(1, 1, 0.25, path="cg_0"),
            spinner(2, 1, 0.25, path="cg_0"),
            spinner(3, 0, 1 - a0_rate, path="cg_1"),
            spinner(4, 1, 0.25, path="cg_1"),
            spinner(5, 1, 0.25, path="cg_1"),
        ]
        rec = record(workers, 2)
        rec["events"] = [
            {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": None},
            {"at_s": 0.0, "op": "add_cgroup", "path": "cg_1", "cpus": None},
            {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0, 1, 2]},
            {"at_s": 0.0, "op": "spawn", "path": "cg_1", "ids": [3, 4, 5]},
        ]
        return rec

    (f,) = [f for f in fairness(two_cgroups(0.5)) if f.kind == "ok"]
    assert "cgroup cg_0: 25.0 points by placement" in f.message, f.message
    assert "cgroup cg_1: 25.0 points by placement" in f.message, f.message
    # a0 getting three times b0's time on the CPU they share fails, in both cgroups
    unfair = [f for f in fairness(two_cgroups(0.75)) if f.status == "fail"]
    assert {f.cgroup for f in unfair} == {"cg_0", "cg_1"}, unfair
