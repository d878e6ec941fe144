"""The CPU time quota-held workers left the free workers that shared their CPUs.

Beside workers held back by a cpu.max quota, a free worker gets its CPU whenever its
co-runner is throttled.  How much that is depends on how the kernel handed the quota's
runtime out over the CPUs (slices per CPU, refilled each period): on 8 vCPUs under
EEVDF, free spinners one per CPU beside throttled ones spread 19 points in off-CPU
share while each CPU was shared fairly.  So a free worker's share is also taken of the
room it had: on each CPU it stayed on (its stretches, colocated.py), the wall time less
the CPU time quota-held workers ran there meanwhile, split over the equal free workers
on that CPU meanwhile.  Under a fair scheduler each gets about all of its part,
wherever the quota's runtime and the workers went.

Reads: ``workers[].progress, residency`` (through colocated.py).
"""

from __future__ import annotations

from collections import defaultdict

from ktstr.checks import colocated


def _held_use(held: list[dict]) -> dict[int, list[colocated.Stretch]]:
    """CPU -> the quota-held workers' stretches on it."""
    out: dict[int, list[colocated.Stretch]] = defaultdict(list)
    for w in held:
        for s in colocated.stretches(w):
            out[s.cpu].append(s)
    return out


def _overlap(a: colocated.Stretch, b: colocated.Stretch) -> float:
    return max(0.0, min(a.end_s, b.end_s) - max(a.start_s, b.start_s))


def room_ratios(members: list[dict], held: list[dict], min_s: float) -> dict[int, float] | None:
    """Each member's CPU time over its fair part of the room: on each CPU it stayed on,
    the wall time less the held workers' CPU time there, split over the members on that
    CPU meanwhile (about 1 for every member when the scheduler shares fairly, wherever
    the quota's runtime and the members went).  None when some member stayed on a CPU
    for less than ``min_s`` in all, or had no room."""
    use = _held_use(held)
    runs = {w["id"]: colocated.stretches(w) for w in members}
    mine: dict[int, list[colocated.Stretch]] = defaultdict(list)
    for ss in runs.values():
        for s in ss:
            mine[s.cpu].append(s)
    out = {}
    for wid, ss in runs.items():
        own = fair = stayed = 0.0
        for s in ss:
            length = s.end_s - s.start_s
            taken = sum(h.rate * _overlap(s, h) for h in use.get(s.cpu, ()))
            others = sum(_overlap(s, o) for o in mine[s.cpu] if o.worker != wid)
            own += s.rate * length
            fair += max(0.0, length - taken) / (1 + others / length)
            stayed += length
        if stayed < min_s or fair <= 0:
            return None
        out[wid] = own / fair
    return out
