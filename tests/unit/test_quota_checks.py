"""Checks that expect what a cpu.max quota leaves a cgroup, and still fail a scheduler
that is unfair or idles CPUs beyond what the quota explains."""

from ktstr.checks import judge, quota
from tests.unit.test_checks import record, worker
from tests.unit.test_work_conservation import timeline

THROTTLED = [60, 50, 2_000_000]  # cpu.stat: periods, throttled periods, throttled us


def plan(*ops: dict) -> dict:
    return {"steps": [{"start_s": 0.0, "ops": list(ops), "repeats": []}]}


def limited(cpus: float = 1.0, enforced: bool = True, a_cpu_s=1.5, b_cpu_s=4.5) -> dict:
    """Cgroup a (4 spinners, a quota of ``cpus`` CPUs) beside b (4 spinners) on 4 CPUs."""
    stat = THROTTLED if enforced else [60, 0, 0]
    workers = [worker(i, "a", cpu_s=a_cpu_s, throttled={"a": stat}) for i in range(4)]
    workers += [worker(i + 4, "b", cpu_s=b_cpu_s) for i in range(4)]
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": None},
        {"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0, 1, 2, 3]},
        {"at_s": 0.0, "op": "add_cgroup", "path": "b", "cpus": None},
        {"at_s": 0.0, "op": "spawn", "path": "b", "ids": [4, 5, 6, 7]},
    ]
    rec = record(workers, events=events, cpus=4)
    quota_us = int(cpus * 100_000)
    rec["plan"] = plan(
        {"op": "add_cgroup", "path": "a", "controls": {"cpu.max": f"{quota_us} 100000"}},
        {"op": "add_cgroup", "path": "b"},
    )
    return rec


def fairness(rec: dict, status: str | None = None) -> list:
    return [f for f in judge(rec).findings if f.check == "fairness" and status in (None, f.status)]


def test_the_quota_is_what_the_throttled_cgroup_is_expected_to_get():
    # a: 1 CPU of 4 by its quota, b: the other 3 -- 25%:75%, not the 50%:50% of equal weights
    assert not fairness(limited(), "fail")
    (ok,) = [f for f in fairness(limited()) if f.kind == "weights_ok"]
    assert "got 25%:75% of the CPU time, expected 25%:75%" in ok.message
    assert "a held to 1 CPUs by cpu.max" in ok.message


def test_a_scheduler_that_starves_the_throttled_cgroup_below_its_quota_still_fails():
    # a gets half a CPU although its quota allows one and b could spare it
    unfair = fairness(limited(a_cpu_s=0.75, b_cpu_s=5.25), "fail")
    assert {f.kind for f in unfair} == {"weight_mismatch"}
    assert "cgroup a (cpu.weight 100, cpu.max 1 CPUs) got 12%" in unfair[0].message
    assert "expected 25%" in unfair[0].message


def test_a_quota_the_scheduler_did_not_enforce_leaves_the_cgroup_judged_as_free():
    # no throttled period: the 25%:75% split is the scheduler's own doing
    assert quota.limits(limited(enforced=False)) == {}
    unfair = fairness(limited(enforced=False), "fail")
    assert {f.kind for f in unfair} == {"weight_mismatch"}
    assert "expected 50%" in unfair[0].message


def test_limits_follow_the_plan_and_end_with_the_cgroup():
    rec = limited()
    rec["plan"]["steps"].append(
        {
            "start_s": 3.0,
            "ops": [{"op": "set_controls", "path": "a", "controls": {"cpu.max": "50000 100000"}}],
            "repeats": [{"at_s": 4.0, "ops": [{"op": "remove_cgroup", "path": "a"}]}],
        }
    )
    assert quota.limits(rec) == {"a": [(0.0, 1.0), (3.0, 0.5), (4.0, None)]}
    a0 = rec["workers"][0]
    assert quota.share(rec, a0, 0.0, 1.0) == 0.25
    assert quota.share(rec, a0, 2.0, 3.5) == 0.125  # the lower quota from 3 s
    assert quota.share(rec, rec["workers"][4], 0.0, 6.0) == 1.0
    assert quota.changed(rec, "a") and not quota.changed(rec, "b")
    # siblings whose quota changed mid-run are not weighed on whole-run shares
    assert not [f for f in fairness(rec) if f.kind in ("weights_ok", "weight_mismatch")]


def test_a_guest_cannot_claim_a_quota_the_plan_never_set():
    rec = limited()
    rec["workers"][4]["throttled"] = {"b": THROTTLED}
    assert set(quota.limits(rec)) == {"a"}


def quota_alone(quota_cpus: float, queued_on_cpu0: float) -> dict:
    """Four spinners of one cgroup with a quota: CPU 0 busy with a queue, the rest idle."""
    workers = [worker(i, "a", cpu_s=1.5, throttled={"a": THROTTLED}) for i in range(4)]
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": None},
        {"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0, 1, 2, 3]},
    ]
    rec = record(workers, events=events, cpus=4)
    rec["plan"] = plan(
        {
            "op": "add_cgroup",
            "path": "a",
            "controls": {"cpu.max": f"{int(quota_cpus * 1e5)} 100000"},
        }
    )
    rec["timeline"] = timeline(lambda cpu: (1.0, queued_on_cpu0) if cpu == 0 else (0.0, 0.0))
    return rec


def work_conservation(rec: dict) -> list:
    return [f for f in judge(rec).findings if f.check == "work_conservation"]


def test_cpus_a_quota_leaves_idle_are_not_waste_but_idling_beyond_it_is():
    # one CPU's worth of quota for four workers: three wait on purpose
    (ok,) = work_conservation(quota_alone(1.0, 3.0))
    assert ok.status == "pass" and ok.value == 0.0
    # a quota of three CPUs explains one waiting worker, not three
    (bad,) = work_conservation(quota_alone(3.0, 3.0))
    assert bad.status == "fail" and bad.value == 2.0


def test_running_over_the_quota_is_the_kernels_slack_not_a_siblings_loss():
    # the kernel hands bandwidth out in per-CPU slices: a throttled cgroup overshoots
    # (1.27 CPUs for a quota of 1 here), and the free sibling is judged on what it left
    assert not fairness(limited(a_cpu_s=1.9, b_cpu_s=4.1), "fail")


def gapped(ran_s: float, enforced: bool = True) -> dict:
    """Cgroup a's four workers under a quota of one CPU (a quarter each); worker 0 has a
    3 s gap from +2 s in which it ran ``ran_s``."""
    rec = limited(enforced=enforced)
    w = rec["workers"][0]
    w["gaps"] = [[3.0, 2.0, 0]]
    w["progress"] = [
        [0.0, 0, 0, 0],
        [2.0, 10, 0, int(0.5e9)],
        [5.0, 11, 0, int((0.5 + ran_s) * 1e9)],
    ]
    return rec


def not_stuck(rec: dict) -> list:
    return [f for f in judge(rec).findings if f.check == "not_stuck" and f.status == "fail"]


def test_a_gap_the_quota_explains_is_not_stuck_but_a_starved_worker_still_is():
    # at a quarter of a CPU, 0.7 s of CPU takes 2.8 s: 0.2 s of the 3 s gap is waiting
    assert not not_stuck(gapped(0.7))
    # the same gap without a quota that bit: 2.3 s of waiting in one go
    (free,) = not_stuck(gapped(0.7, enforced=False))
    assert free.worker == 0 and free.value == 2300.0
    # no quota explains a worker that got nothing
    (starved,) = not_stuck(gapped(0.0))
    assert starved.worker == 0 and starved.value == 3000.0


def test_a_cpu_idle_cgroup_is_not_weighed_against_its_siblings():
    # a cgroup with cpu.idle runs at the lowest weight: 25%:75% is what the kernel does
    rec = limited(enforced=False)
    rec["plan"]["steps"][0]["ops"][0]["controls"] = {"cpu.idle": "1"}
    assert quota.idle(rec) == {"a"}
    assert not [f for f in fairness(rec) if f.kind in ("weights_ok", "weight_mismatch")]


def beside_held(held_rates: tuple[float, float], free_rates: tuple[float, float]) -> dict:
    """Free workers 0 and 1 alone on CPUs 0 and 1, each beside a quota-held worker (2, 3)
    running at the given rates; every rate is CPU seconds per second, steady for 6 s."""

    def steady(wid, path, cpu, rate, **extra):
        points = [[t / 2, t, cpu, int(rate * t / 2 * 1e9)] for t in range(13)]
        return worker(wid, path, cpu_s=rate * 6, progress=points, residency=[[0.0, cpu]], **extra)

    workers = [steady(i, "free", i, r) for i, r in enumerate(free_rates)]
    workers += [
        steady(i + 2, "held", i, r, throttled={"held": THROTTLED}) for i, r in enumerate(held_rates)
    ]
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "free", "cpus": None},
        {"at_s": 0.0, "op": "spawn", "path": "free", "ids": [0, 1]},
        {"at_s": 0.0, "op": "add_cgroup", "path": "held", "cpus": None},
        {"at_s": 0.0, "op": "spawn", "path": "held", "ids": [2, 3]},
    ]
    rec = record(workers, events=events, cpus=2)
    rec["plan"] = plan(
        {"op": "add_cgroup", "path": "free"},
        {"op": "add_cgroup", "path": "held", "controls": {"cpu.max": "50000 100000"}},
    )
    return rec


def test_free_workers_are_judged_on_the_cpu_time_quota_held_workers_left_them():
    # the quota's runtime went 0.1 to CPU 0 and 0.4 to CPU 1: the free workers' off-CPU
    # shares spread 30 points, yet each got all the CPU time left to it
    fair = [f for f in fairness(beside_held((0.1, 0.4), (0.9, 0.6))) if f.kind == "ok"]
    assert fair and "of the CPU time quota-held workers left them" in fair[0].message
    # a scheduler that leaves CPU 1 mostly idle beside a throttled worker still fails
    (unfair,) = fairness(beside_held((0.1, 0.2), (0.9, 0.2)), "fail")
    assert unfair.kind == "unfair" and "worker 1 got 0.25" in unfair.message


def held_pair(seconds: int) -> dict:
    """Two workers of a cgroup held to half a CPU share CPU 0 for ``seconds``, one
    getting nine times the other's time."""

    def steady(wid, rate):
        points = [[t / 2, t, 0, int(rate * t / 2 * 1e9)] for t in range(2 * seconds + 1)]
        return worker(
            wid,
            "held",
            cpu_s=rate * seconds,
            end=float(seconds),
            progress=points,
            residency=[[0.0, 0]],
            throttled={"held": THROTTLED},
        )

    rec = record([steady(0, 0.05), steady(1, 0.45)], cpus=1, duration=float(seconds))
    rec["events"][0]["path"] = rec["events"][1]["path"] = "held"
    rec["plan"] = plan(
        {"op": "add_cgroup", "path": "held", "controls": {"cpu.max": "50000 100000"}}
    )
    return rec


def test_a_held_cgroup_is_compared_on_a_shared_cpu_once_its_share_gave_enough_evidence():
    # a quarter of a CPU each: 4 s of sharing carry what 1 s carries for a free worker
    (unfair,) = fairness(held_pair(6), "fail")
    assert "worker 0 ran 0.11x and worker 1 9.00x" in unfair.message
    (ok,) = [f for f in fairness(held_pair(3)) if f.kind == "ok"]
    assert "under its cpu.max quota" in ok.message
