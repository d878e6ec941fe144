"""The payloads ktstr ships: what scheduler people measure with, as Debian packages them.

Arguments are small on purpose: under emulation a guest runs 10-20 times
slower than the host.  ``with_args`` gives any of them other arguments.
"""

from __future__ import annotations

from ktstr.payloads.model import Metric, Payload

_TOTAL_TIME = Metric("time", r"Total time:\s+([0-9.]+)", "s", higher_is_better=False)

STRESS_NG = Payload(
    "stress-ng",
    "stress-ng",
    ("--cpu", "{cpus}", "--timeout", "{seconds}s", "--metrics-brief", "--yaml", "/proc/self/fd/1"),
    package="stress-ng",
    output="stress-ng",
    metrics=(
        Metric("bogo_ops", "metrics/*/bogo-ops", "ops", aggregate="sum"),
        Metric("bogo_ops_per_s", "metrics/*/bogo-ops-per-second-real-time", "/s", aggregate="sum"),
    ),
    description="stress-ng's stressors; bogo-ops from its YAML report",
)
# The scx project's CI runs every scheduler under these stressors; each must make progress.
_STRESSORS = ("cpu", "fork", "affinity", "switch")
STRESS_MIX = Payload(
    "stress-ng-mix",
    "stress-ng",
    (
        *(a for name in _STRESSORS for a in (f"--{name}", "{cpus}")),
        "--timeout",
        "{seconds}s",
        "--metrics-brief",
        "--yaml",
        "/proc/self/fd/1",
    ),
    package="stress-ng",
    output="stress-ng",
    metrics=(
        Metric("bogo_ops", "metrics/*/bogo-ops", "ops", aggregate="sum"),
        *(Metric(f"{n}_bogo_ops", f"metrics/{n}/bogo-ops", "ops", min=1) for n in _STRESSORS),
    ),
    description="stress-ng's cpu, fork, affinity and context-switch stressors, one each per CPU",
)
HACKBENCH = Payload(
    "hackbench",
    "hackbench",
    ("-g", "2", "-f", "4", "-l", "100"),
    package="rt-tests",
    output="regex",
    metrics=(Metric("time", r"^Time:\s+([0-9.]+)", "s", higher_is_better=False),),
    description="groups of senders and receivers passing messages over sockets",
)
CYCLICTEST = Payload(
    "cyclictest",
    "cyclictest",
    ("-q", "-D", "{seconds}", "-t", "{cpus}", "-i", "1000"),
    package="rt-tests",
    output="regex",
    metrics=(
        Metric("max_latency", r"Max:\s+(\d+)", "us", higher_is_better=False, aggregate="max"),
        Metric("avg_latency", r"Avg:\s+(\d+)", "us", higher_is_better=False, aggregate="mean"),
    ),
    description="timer wakeup latency, one thread per CPU",
)
PERF_MESSAGING = Payload(
    "perf-messaging",
    "perf",
    ("bench", "sched", "messaging", "-g", "1", "-l", "20"),
    package="linux-perf",
    output="regex",
    metrics=(_TOTAL_TIME,),
    description="perf bench sched messaging (hackbench's workload)",
)
PERF_PIPE = Payload(
    "perf-pipe",
    "perf",
    ("bench", "sched", "pipe", "-l", "1000"),
    package="linux-perf",
    output="regex",
    metrics=(
        _TOTAL_TIME,
        Metric("usecs_per_op", r"([0-9.]+) usecs/op", "us", higher_is_better=False),
        Metric("ops_per_s", r"(\d+) ops/sec", "/s"),
    ),
    description="perf bench sched pipe: two tasks waking each other through a pipe",
)
FIO = Payload(
    "fio",
    "fio",
    (
        "--name=ktstr",
        "--filename=/tmp/fio.dat",
        "--size=4M",
        "--rw=randrw",
        "--bs=4k",
        "--ioengine=psync",
        "--time_based",
        "--runtime={seconds}",
        "--output-format=json",
    ),
    package="fio",
    output="json",
    metrics=(
        Metric("read_iops", "jobs/*/read/iops", "/s", aggregate="sum"),
        Metric("write_iops", "jobs/*/write/iops", "/s", aggregate="sum"),
        Metric(
            "read_clat_p99",
            "jobs/*/read/clat_ns/percentile/99.000000",
            "ns",
            higher_is_better=False,
            aggregate="max",
        ),
    ),
    description="fio random read/write on a file in the guest's RAM",
)
_SYSBENCH_LATENCY = Metric("latency_avg", r"avg:\s+([0-9.]+)", "ms", higher_is_better=False)
SYSBENCH_CPU = Payload(
    "sysbench-cpu",
    "sysbench",
    ("cpu", "--threads={cpus}", "--time={seconds}", "run"),
    package="sysbench",
    output="regex",
    metrics=(Metric("events_per_s", r"events per second:\s+([0-9.]+)", "/s"), _SYSBENCH_LATENCY),
    description="sysbench cpu: prime numbers, one thread per CPU",
)
SYSBENCH_THREADS = Payload(
    "sysbench-threads",
    "sysbench",
    ("threads", "--threads={cpus}", "--time={seconds}", "run"),
    package="sysbench",
    output="regex",
    metrics=(Metric("events", r"total number of events:\s+(\d+)", "ops"), _SYSBENCH_LATENCY),
    description="sysbench threads: threads contending for mutexes and yielding",
)

PAYLOADS: dict[str, Payload] = {
    p.name: p
    for p in (
        STRESS_NG,
        STRESS_MIX,
        HACKBENCH,
        CYCLICTEST,
        PERF_MESSAGING,
        PERF_PIPE,
        FIO,
        SYSBENCH_CPU,
        SYSBENCH_THREADS,
    )
}
