"""Per-CPU load between consecutive samples, and which CPUs the workers could share.

The guest samples every CPU's ``/proc/stat`` busy share (``util``) and
``/proc/schedstat`` counters (run and run-queue wait, ns) at a fixed
interval.  Between two samples, a CPU's idle share is ``1 - util`` and its
queue is the run-queue wait it accumulated divided by the interval: the
average number of tasks that were runnable there but not running.
"""

from __future__ import annotations

from dataclasses import dataclass

from ktstr.checks import timeline as tl


@dataclass(frozen=True)
class Interval:
    start_s: float
    end_s: float
    idle: dict[int, float]  # CPU -> idle share of the interval, 0..1
    queued: dict[int, float]  # CPU -> tasks waiting on its run queue, on average

    @property
    def length(self) -> float:
        return self.end_s - self.start_s


def intervals(record: dict) -> list[Interval]:
    """Consecutive samples as intervals; a sample with a missing or odd number is skipped."""
    out = []
    samples = [s for s in record.get("timeline", []) if tl.finite(s.get("at_s"))]
    for before, after in zip(samples, samples[1:], strict=False):
        length = after["at_s"] - before["at_s"]
        util, now, then = after.get("util") or {}, after.get("schedstat"), before.get("schedstat")
        if length <= 0 or not util or not now or not then:
            continue
        idle, queued = {}, {}
        for key, share in util.items():
            a, b = then.get(key), now.get(key)
            if not tl.finite(share) or not a or not b or not tl.finite(a[1], b[1]):
                continue
            idle[int(key)] = min(1.0, max(0.0, 1.0 - share))
            queued[int(key)] = max(0.0, (b[1] - a[1]) / 1e9 / length)
        if idle:
            out.append(Interval(before["at_s"], after["at_s"], idle, queued))
    return out


def live_workers(record: dict, start: float, end: float) -> list[dict]:
    """Workers that ran throughout [start, end] (spawned before it, stopped after it)."""
    stopped = tl.stopped_at(record)
    return [
        w
        for w in record.get("workers", [])
        if tl.finite(w.get("start_s"), w.get("end_s"))
        and w["start_s"] <= start
        and min(w["end_s"], stopped.get(w["id"], w["end_s"])) >= end
    ]


def allowed_sets(record: dict, workers: list[dict], t: float, ncpus: int) -> list[frozenset[int]]:
    """The CPU set each live worker's cgroup (and affinity) allowed at ``t``."""
    everything = frozenset(range(ncpus))
    cpusets = tl.cpuset_changes(record, ncpus)
    affinity = tl.affinity_changes(record)
    paths = tl.worker_paths(record)
    out = []
    for w in workers:
        node = tl.path_at(paths.get(w["id"]) or [(0.0, w.get("cgroup_path", ""))], t)
        while node and node not in cpusets:  # the nearest ancestor with a cpuset decides
            node = node.rpartition("/")[0]
        cpus = tl.set_at(cpusets[node], t, everything) if node else everything
        out.append(cpus & tl.set_at(affinity.get(w["id"], []), t, everything) or cpus)
    return out


def components(sets: list[frozenset[int]]) -> list[frozenset[int]]:
    """Groups of CPUs joined by overlapping allowed sets: work can move within a group only."""
    groups: list[set[int]] = []
    for cpus in {s for s in sets if s}:
        joined = set(cpus)
        rest = []
        for g in groups:
            if g & joined:
                joined |= g
            else:
                rest.append(g)
        groups = rest + [joined]
    return [frozenset(g) for g in groups]


# Ops after which the kernel (and the scheduler) must move tasks: a window that spans
# one judges a placement in the middle of changing.
PLACEMENT_OPS = frozenset(
    {
        "start",
        "spawn",
        "add_cgroup",
        "remove_cgroup",
        "set_cpuset",
        "set_affinity",
        "move_tasks",
        "stop_workers",
        "freeze",
        "unfreeze",
    }
)


def settled(record: dict, settle_s: float) -> list[Interval]:
    """The intervals that begin at least ``settle_s`` after the last placement change."""
    changes = sorted(
        ev["at_s"]
        for ev in record.get("events", [])
        if ev.get("op") in PLACEMENT_OPS and tl.finite(ev.get("at_s"))
    )
    return [
        iv
        for iv in intervals(record)
        if not any(iv.start_s - settle_s < at < iv.end_s for at in changes)
    ]
