"""A user's own scenarios and scheduler, as `ktstr run FILE::NAME` and friends load them."""

from pathlib import Path

from ktstr import CgroupDef, Flag, Op, Scenario, Scheduler, Step
from ktstr.scenario.work import spin

HERE = Path(__file__).resolve().parent

two_spinners = Scenario(
    "two_spinners",
    "two cgroups of two spinners, held for the whole run",
    [
        Step(
            [
                Op.add_cgroup(CgroupDef("a", workers=2, work=spin())),
                Op.add_cgroup(CgroupDef("b", workers=2, work=spin())),
            ]
        )
    ],
    duration_s=4,
)

with_files = Scenario(
    "with_files",
    "one spinner, and a file the guest gets under /include-files/",
    [Step([Op.add_cgroup(CgroupDef("a", workers=1, work=spin()))])],
    duration_s=4,
    include_files=[str(HERE / "user_include.txt")],
)

SIMPLE = Scheduler(
    "scx_simple",
    "scx_simple",
    flags={"fifo": Flag(("-f",)), "verbose": Flag(("-v",))},
)

NOT_A_SCENARIO = 42
