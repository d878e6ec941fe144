"""not_stuck: every worker made progress, and no gap between its progress stamps was
longer than the limit, outside windows where the scenario froze its cgroup on purpose.
The time from a worker's release (the start gate, or its spawn in a later step) to its
first stamp counts as a gap too: a scheduler that starves a worker from the start must
not pass because the worker never stamped.

A gap between stamps is judged by the longest time the worker was surely off a CPU at
once in it.  Its time off a CPU is the gap less the CPU time the kernel charged it
meanwhile.  Under emulation a task can be on a vCPU that the emulator is not running
for a while: the guest charges it that time, and its next stamp comes late, but no
scheduler kept it waiting (on 16 busy vCPUs, one short unit of work was charged
0.4-1.0 s).  And time off a CPU is not one wait when the worker was preempted and got
its CPU back many times in the gap: each stretch off a CPU began with a preemption, so
with n of them the longest stretch was at least the total over n.  Each gap carries
the CPU time, the times the worker slept or blocked and the times it was preempted
(the thread's rusage) between its two stamps.  A gap in which it slept or blocked (a
writer on a frozen filesystem) counts whole, as does one with a single preemption (a
starved or stopped worker).  From
its release to its first stamp, the CPU time it had when released
(``released_cpu_ns``) stands in for a stamp.  Gaps nothing brackets (the tail) count
whole; older records' gaps are judged from the progress points around them.

Reads: ``workers[].units, gaps, progress, released_cpu_ns, start_s, end_s, error``,
``events`` (freeze/unfreeze, stops), ``duration_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ktstr.checks import quota
from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding
from ktstr.checks.workers import label


@dataclass(frozen=True)
class Wait:
    """How a worker was off a CPU in one gap: ``longest`` is what is judged."""

    longest: float  # seconds it was surely off a CPU at once
    total: float  # seconds it was off a CPU in all
    turns: int | None = None  # times it was preempted in the gap, when that split it


def waited(worker: dict, gap: float, at: float) -> Wait:
    """How the worker was off a CPU in the gap at ``at`` (in all, at most the gap)."""
    for entry in worker.get("gaps") or []:
        if len(entry) >= 6 and entry[0] == gap and entry[1] == at and tl.finite(*entry[3:6]):
            # measured between the gap's own two stamps
            total = min(gap, max(0.0, gap - entry[3]))
            if entry[4] > 0:  # it slept or blocked: one of those stretches may be all of it
                return Wait(total, total)
            # only preempted: each stretch began with a preemption, so n of them leave
            # one of at least total/n
            turns = max(0, int(entry[5]))
            return Wait(total / turns if turns > 1 else total, total, turns)
    return _around(worker, gap, at)


def _around(worker: dict, gap: float, at: float) -> Wait:
    """Older records: from the progress points that enclose the gap, which may start a
    little before it; the time off a CPU there is at least that in the gap, so this never
    excuses more than the gap held."""
    points = [p for p in worker.get("progress") or [] if len(p) >= 4 and tl.finite(p[0], p[3])]
    before = [p for p in points if p[0] <= at + 1e-6]
    after = [p for p in points if p[0] >= at + gap - 1e-6]
    if not before or not after:
        return Wait(gap, gap)
    first, last = before[-1], after[0]
    off = min(gap, max(0.0, last[0] - first[0] - (last[3] - first[3]) / 1e9))
    return Wait(off, off)


def _wait(worker: dict, gap: float, at: float, kind: str) -> Wait:
    if kind == "stamps":
        return waited(worker, gap, at)
    points = worker.get("progress") or []
    before = worker.get("released_cpu_ns")
    if kind == "release" and points and len(points[0]) >= 4 and tl.finite(before, points[0][3]):
        off = min(gap, max(0.0, gap - (points[0][3] - before) / 1e9))
        return Wait(off, off)
    return Wait(gap, gap)


def not_stuck(record: dict, th: dict) -> list[Finding]:
    limit_ms = th["not_stuck.max_gap_ms"]
    workers = record.get("workers", [])
    if not workers:
        return [Finding("not_stuck", INCONCLUSIVE, "no_workers", "the run recorded no workers")]
    duration = record.get("duration_s", 0.0)
    frozen = tl.windows(record, "freeze", "unfreeze", duration)
    lim = quota.limits(record)
    stopped = tl.stopped_at(record)
    released = tl.released_at(record)
    out, worst, longest_gap = [], 0.0, 0.0
    for w in workers:
        wid, path = w["id"], w.get("cgroup_path", "?")
        if w.get("error"):
            out.append(
                Finding(
                    "not_stuck",
                    FAIL,
                    "worker_error",
                    f"{label(record, wid)} failed: {w['error']}",
                    wid,
                    path,
                )
            )
            continue
        if not w.get("units"):
            out.append(
                Finding(
                    "not_stuck",
                    FAIL,
                    "no_progress",
                    f"{label(record, wid)} made no progress",
                    wid,
                    path,
                )
            )
            continue
        freeze = [
            win
            for p, wins in frozen.items()
            if path == p or path.startswith(p + "/")
            for win in wins
        ]
        gaps = [(g[0], g[1], g[2], "stamps") for g in w.get("gaps", [])]
        begun = released.get(wid)
        if begun is not None and tl.finite(w.get("start_s")) and w["start_s"] > begun:
            gaps.append((w["start_s"] - begun, begun, None, "release"))  # not yet stamping
        end = min(duration, stopped.get(wid, duration))
        tail = end - w.get("end_s", end)
        if tail > 0:
            gaps.append((tail, w["end_s"], None, "tail"))
        # under an enforced cpu.max quota a worker waits on purpose for the part of the
        # gap its share does not give it: its CPU time is counted at its share (quota.py)
        judged = [
            (
                _wait(quota.scaled(w, quota.share(record, w, at, at + gap, lim)), gap, at, kind),
                gap,
                at,
                cpu,
            )
            for gap, at, cpu, kind in gaps
            if not any(at < b and at + gap > a for a, b in freeze)  # frozen on purpose
        ]
        if not judged:
            continue
        # by the wait alone: a tie would compare a CPU with None (a hostile guest can
        # send a gap equal to the tail's)
        how, gap, at, cpu = max(judged, key=lambda j: j[0].longest)
        wait = how.longest
        worst, longest_gap = max(worst, wait * 1000), max(longest_gap, gap * 1000)
        if wait * 1000 > limit_ms:
            where = f" on cpu {cpu}" if cpu is not None else ""
            ran = (
                f"; it ran {(gap - how.total) * 1000:.0f} ms of a {gap * 1000:.0f} ms gap"
                if (gap - how.total) * 1000 >= 1
                else ""
            )
            if how.turns and how.turns > 1:
                ran += f", off a CPU {how.total * 1000:.0f} ms in {how.turns} turns"
            out.append(
                Finding(
                    "not_stuck",
                    FAIL,
                    "stuck",
                    f"{label(record, wid)} stuck {wait * 1000:.0f} ms{where} at +{at:.1f} s "
                    f"(limit {limit_ms:.0f} ms{ran})",
                    wid,
                    path,
                    cpu,
                    round(at, 3),
                    round(wait * 1000, 1),
                    limit_ms,
                )
            )
    if not any(f.status == FAIL for f in out):
        out.append(
            Finding(
                "not_stuck",
                PASS,
                "ok",
                f"longest gap {worst:.0f} ms"
                if longest_gap - worst < 10  # less than 10 ms apart: not worth a word
                else f"longest wait {worst:.0f} ms (longest gap between stamps "
                f"{longest_gap:.0f} ms, part of it on a CPU)",
                value=round(worst, 1),
                limit=limit_ms,
            )
        )
    return out
