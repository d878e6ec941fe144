"""Per-CPU samples: utilization and steal from ``/proc/stat``, schedstat counters.

The event loop takes a sample every ``sample_interval_s``; utilization
is the busy share of the interval since the previous sample.
"""

from __future__ import annotations

import time

from ktstr import wire
from ktstr.guest import disks
from ktstr.guest.channel import Channel

IDLE, IOWAIT, STEAL = 3, 4, 7  # columns of a /proc/stat cpuN line, after the name


def proc_stat(path: str = "/proc/stat") -> dict[int, list[int]]:
    """cpu -> its first eight /proc/stat counters (user .. steal), in jiffies."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                out[int(parts[0][3:])] = [int(x) for x in parts[1:9]]
    return out


def schedstat_cpus(path: str = "/proc/schedstat") -> dict[int, list[int]]:
    """cpu -> [run ns, wait ns, timeslices] from /proc/schedstat."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("cpu"):
                parts = line.split()
                out[int(parts[0][3:])] = [int(parts[7]), int(parts[8]), int(parts[9])]
    return out


def utilization(stat: dict[int, list[int]], before: dict[int, list[int]]) -> dict[str, float]:
    """Busy share of each CPU between two /proc/stat readings (idle and iowait are idle).

    A CPU missing from ``before`` (the first sample) has no value yet.
    """
    util = {}
    for cpu, now in stat.items():
        then = before.get(cpu)
        if then:
            delta = [a - b for a, b in zip(now, then, strict=True)]
            total = sum(delta) or 1
            idle = delta[IDLE] + delta[IOWAIT]
            util[str(cpu)] = round(1 - idle / total, 4)
    return util


def steal(stat: dict[int, list[int]]) -> dict[str, int]:
    """Each CPU's steal counter: time the host ran something else."""
    return {str(c): v[STEAL] for c, v in stat.items()}


def send_sample(
    channel: Channel, t0: float, previous: dict, running: int, disk_names: list[str]
) -> dict:
    """Read and send one sample; returns what the next one needs (pass ``{}`` first)."""
    stat, sched = proc_stat(), schedstat_cpus()
    channel.send(
        wire.SAMPLE,
        at_s=round(time.monotonic() - t0, 6),
        util=utilization(stat, previous.get("stat", {})),
        steal=steal(stat),
        schedstat={str(c): v for c, v in sched.items()},
        running=running,
        disks={name: disks.sample(name) for name in disk_names},
    )
    return {"stat": stat}
