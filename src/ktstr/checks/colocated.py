"""How equal workers shared a CPU while they were on it together.

Off-CPU shares over a whole run mix two things: how each CPU was shared,
and how many workers each CPU had.  A load balancer that leaves one CPU
with three spinners and another with two for seconds (EEVDF does, on
8-16 vCPUs under TCG) gives equal workers unequal shares even though every
CPU shares its time fairly.  Placement is judged by imbalance and
work_conservation; this module isolates the sharing.

Each worker's progress points carry its CPU and its CPU time.  Between two
consecutive points on the same CPU with no move in between, the worker
stayed on that CPU, and its CPU rate there is the CPU time it gained over
the wall time.  Where two workers' stretches on one CPU overlap, they
competed for it: each worker's rate is compared with its co-runners' over
the overlap.  A worker's ``ratio`` is its rate summed over every such
overlap divided by its co-runners' rates summed over the same overlaps:
about 1 for every worker when the CPU is shared equally; when one of two
workers on a CPU gets twice the other's time, 2 and 0.5.

Both rates of a pair come from the same CPU over the same wall time, so
what the emulator does to a vCPU's speed, and a guest clock that runs
faster or slower than the host's, affect both alike.

Reads: ``workers[].progress`` (4-item points), ``residency``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from ktstr.checks import timeline as tl


@dataclass(frozen=True)
class Stretch:
    """A worker on one CPU between two of its progress points."""

    worker: int
    start_s: float
    end_s: float
    cpu: int
    rate: float  # CPU seconds per wall second


@dataclass(frozen=True)
class Shared:
    """One worker's share against its co-runners, over the time it shared a CPU."""

    ratio: float
    shared_s: float


# Points closer together than this are thinned out: the guest takes one every 0.1 s, and
# a guest that sends more (or sends them out of order) must not buy itself host CPU time.
MIN_STEP_S = 0.05


def _points(worker: dict) -> list[list]:
    """Points that know their CPU and CPU time, in time order, at least MIN_STEP_S apart."""
    out: list[list] = []
    for p in worker.get("progress") or []:
        if len(p) < 4 or p[2] is None or not tl.finite(p[0], p[3]):
            continue
        if not out or p[0] >= out[-1][0] + MIN_STEP_S:
            out.append(p)
    return out


def stretches(worker: dict) -> list[Stretch]:
    """The worker's stays on one CPU, between consecutive points that know CPU and CPU time."""
    moves = sorted(at for at, _ in (worker.get("residency") or [])[1:] if tl.finite(at))
    points = _points(worker)
    out = []
    for a, b in zip(points, points[1:], strict=False):
        if a[2] != b[2] or b[3] < a[3]:
            continue
        i = bisect.bisect_right(moves, a[0])
        if i < len(moves) and moves[i] <= b[0]:
            continue  # it left and came back: where it waited is unknown
        # A task cannot run more than the wall time; under TCG the guest's scheduler clock
        # jumps now and then (a rate of 4.4 over 0.16 s was seen), so a rate is capped at 1.
        rate = min(1.0, (b[3] - a[3]) / 1e9 / (b[0] - a[0]))
        out.append(Stretch(worker["id"], a[0], b[0], a[2], rate))
    return out


def settled_s(worker: dict) -> float:
    """Seconds the worker stayed put on one CPU (in its stretches)."""
    return sum(s.end_s - s.start_s for s in stretches(worker))


def overlaps(workers: list[dict]) -> Iterator[tuple[Stretch, Stretch, float]]:
    """Every two stretches of different workers on the same CPU at the same time, with
    how long they overlapped."""
    by_cpu: dict[int, list[Stretch]] = defaultdict(list)
    for w in workers:
        for s in stretches(w):
            by_cpu[s.cpu].append(s)
    for on_cpu in by_cpu.values():
        on_cpu.sort(key=lambda s: s.start_s)
        for i, a in enumerate(on_cpu):
            for b in on_cpu[i + 1 :]:
                if b.start_s >= a.end_s:
                    break
                overlap = min(a.end_s, b.end_s) - b.start_s
                if a.worker != b.worker and overlap > 0:
                    yield a, b, overlap


def compare(
    workers: list[dict],
    peers: list[dict] | None = None,
    task_weight: dict[int, float] | None = None,
) -> dict[int, Shared]:
    """Each worker's ratio to its co-runners on shared CPUs.

    Co-runners are the other ``workers`` and any of ``peers`` (workers judged elsewhere
    that compete the same way: another cgroup's spinners, say); with ``task_weight``,
    a co-runner's rate counts scaled by the two tasks' weights, since on one CPU two
    tasks share in proportion to them.
    """
    judged = {w["id"] for w in workers}
    weight = task_weight or {}
    mine: dict[int, float] = defaultdict(float)
    theirs: dict[int, float] = defaultdict(float)
    shared: dict[int, float] = defaultdict(float)
    for a, b, overlap in overlaps(workers + (peers or [])):
        for x, y in ((a, b), (b, a)):
            if x.worker not in judged:
                continue
            scale = weight.get(x.worker, 1.0) / weight.get(y.worker, 1.0)
            mine[x.worker] += overlap * x.rate
            theirs[x.worker] += overlap * y.rate * scale
            shared[x.worker] += overlap
    return {wid: Shared(mine[wid] / theirs[wid], shared[wid]) for wid in shared if theirs[wid] > 0}


@dataclass(frozen=True)
class Across:
    """Workers of different groups on shared CPUs: for each two groups (in sorted order),
    the CPU each one's workers got there (rate times overlap, summed), and how long each
    worker shared a CPU with another group's."""

    got: dict[tuple[str, str], tuple[float, float]]
    shared_s: dict[int, float]


def across(groups: dict[str, list[dict]]) -> Across:
    """What workers of different groups got while they shared a CPU with each other.

    Two tasks on one CPU get CPU in proportion to their weights whatever else the CPU
    holds, so the ratio of these sums is the ratio of per-task weights, where the
    whole-run ratio also carries where each group's tasks were placed.
    """
    group_of = {w["id"]: g for g, ws in groups.items() for w in ws}
    got: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    shared: dict[int, float] = defaultdict(float)
    for a, b, overlap in overlaps([w for ws in groups.values() for w in ws]):
        ga, gb = group_of[a.worker], group_of[b.worker]
        if ga == gb:
            continue
        if gb < ga:
            (a, ga), (b, gb) = (b, gb), (a, ga)
        sums = got[(ga, gb)]
        sums[0] += overlap * a.rate
        sums[1] += overlap * b.rate
        shared[a.worker] += overlap
        shared[b.worker] += overlap
    return Across({k: (v[0], v[1]) for k, v in got.items()}, dict(shared))
