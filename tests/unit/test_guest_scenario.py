"""The scenario event loop's pure parts: the round schedule, the layout check,
the plan version, and the calibration loop both sides share."""

from __future__ import annotations

import pytest

from ktstr import wire
from ktstr.guest import scenario


def step(start_s: float, ops: list, repeats: list[tuple[float, list]] = ()) -> dict:
    return {"start_s": start_s, "ops": ops, "repeats": [{"at_s": a, "ops": o} for a, o in repeats]}


def test_the_schedule_lists_every_round_after_the_start_in_time_order():
    steps = [
        step(0.0, ["setup"], [(1.0, ["loop1"]), (2.0, ["loop2"])]),
        step(3.0, ["second"]),
        step(5.0, ["third"], [(6.5, ["again"])]),
    ]
    rounds = scenario.schedule(steps, t0=100.0)
    # The first step at 0 s runs before the gate opens; its repeats do not.
    assert rounds == [
        (101.0, ["loop1"]),
        (102.0, ["loop2"]),
        (103.0, ["second"]),
        (105.0, ["third"]),
        (106.5, ["again"]),
        (float("inf"), []),
    ]
    assert [t for t, _ in rounds] == sorted(t for t, _ in rounds)


def test_a_first_step_after_zero_is_a_round_too():
    assert scenario.schedule([step(0.5, ["late"])], t0=10.0) == [
        (10.5, ["late"]),
        (float("inf"), []),
    ]
    assert scenario.schedule([], t0=10.0) == [(float("inf"), [])]


def test_the_schedule_of_a_compiled_loop():
    from ktstr import CgroupDef, CpusetSpec, HoldSpec, Op, Scenario, Step, Topology
    from ktstr.scenario.plan import compile_plan

    plan = compile_plan(
        Scenario(
            "t",
            "",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("a", cpuset=CpusetSpec.llc(0))),
                        Op.add_cgroup(CgroupDef("b", cpuset=CpusetSpec.llc(1))),
                    ],
                    HoldSpec(seconds=1.0),
                ),
                Step(
                    [Op.swap_cpusets("a", "b")],
                    HoldSpec(seconds=3.0, loop_interval_s=1.0),
                ),
            ],
            duration_s=4.0,
        ),
        Topology.parse("1n2l2c1t"),
    )
    rounds = scenario.schedule(plan["steps"], t0=0.0)
    assert [t for t, _ in rounds] == [1.0, 2.0, 3.0, float("inf")]
    assert [r[0]["cpus"] for _, r in rounds[:-1]] == [[2, 3], [0, 1], [2, 3]]


LAYOUT = {
    "cpus": 4,
    "numa_nodes": [[0, 1, 2, 3]],
    "llcs": [[0, 1], [2, 3]],
    "smt_siblings": [[0], [1], [2], [3]],
}


def test_the_layout_check_names_the_first_difference():
    scenario.check_layout(dict(LAYOUT, distances=[[10]]), LAYOUT)  # extra keys do not matter
    with pytest.raises(ValueError, match=r"the guest's llcs \[\[0, 1, 2, 3\]\] differ"):
        scenario.check_layout(dict(LAYOUT, llcs=[[0, 1, 2, 3]]), LAYOUT)


def test_a_plan_of_another_version_is_refused():
    with pytest.raises(ValueError, match="plan version 1, this agent runs"):
        scenario.Runner(None, {"plan_version": 1})  # type: ignore[arg-type]


def test_calibration_is_one_loop_both_sides_import_from_wire():
    assert not hasattr(scenario, "calibrate")  # one copy: the host's and the guest's are the same
    assert wire.CALIBRATION_LOOPS == 200_000
    short, long = wire.calibrate(1000), wire.calibrate(1_000_000)
    assert 0 < short < long
