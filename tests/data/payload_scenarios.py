"""Payloads next to spin workers, as a user declares them (``ktstr run FILE::NAME``)."""

from pathlib import Path

from ktstr import CgroupDef, HoldSpec, Op, Payload, Scenario, Step
from ktstr.payloads.catalog import (
    CYCLICTEST,
    FIO,
    HACKBENCH,
    PERF_MESSAGING,
    PERF_PIPE,
    STRESS_NG,
    SYSBENCH_CPU,
    SYSBENCH_THREADS,
)
from ktstr.scenario.work import spin

# Small enough to finish in a few seconds of an emulated 2-CPU guest.
SMALL_HACKBENCH = HACKBENCH.with_args("-g", "1", "-f", "2", "-l", "50")
CPU_STRESS = STRESS_NG.with_args(
    "--cpu", "1", "--timeout", "{seconds}s", "--metrics-brief", "--yaml", "/proc/self/fd/1"
)

payloads_and_spinners = Scenario(
    "payloads_and_spinners",
    "hackbench and stress-ng in cgroups of their own next to two spinners",
    [
        Step(
            [
                Op.add_cgroup(CgroupDef("spin", workers=2, work=spin())),
                Op.add_cgroup(CgroupDef("hb", workers=0, payload=SMALL_HACKBENCH)),
                Op.add_cgroup(CgroupDef("sng", workers=0)),
                Op.run_payload("sng", CPU_STRESS),
            ],
            HoldSpec(frac=0.5),
        ),
        Step([Op.wait_payload("hackbench")], HoldSpec(frac=0.5)),
    ],
    duration_s=6,
)

# A payload that fails and one whose output cannot be read: the bad input, in one VM;
# and a program of the user's own that reads an included file (judged by its exit only).
FAILS = HACKBENCH.with_args("--no-such-option", name="failing")
UNREADABLE = STRESS_NG.with_args("--version", name="unreadable")
READER = Payload("reader", "cat", ("/include-files/user_include.txt",), package="coreutils")

bad_payloads = Scenario(
    "bad_payloads",
    "a payload that exits non-zero and one whose output the parser cannot read",
    [
        Step(
            [
                Op.add_cgroup(CgroupDef("a", workers=1, payload=[FAILS, UNREADABLE, READER])),
            ]
        )
    ],
    duration_s=3,
    include_files=[str(Path(__file__).resolve().parent / "user_include.txt")],
)

# Every other shipped declaration, each in a cgroup of its own, all at once.
OTHERS = (CYCLICTEST, FIO, PERF_MESSAGING, PERF_PIPE, SYSBENCH_CPU, SYSBENCH_THREADS)
every_shipped = Scenario(
    "every_shipped",
    "cyclictest, fio, perf bench sched messaging and pipe, sysbench cpu and threads",
    [
        Step(
            [
                Op.add_cgroup(CgroupDef(p.name.replace("-", "_"), workers=0, payload=p))
                for p in OTHERS
            ]
        )
    ],
    duration_s=16,
)
