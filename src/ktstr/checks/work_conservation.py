"""work_conservation: CPUs sat idle while runnable tasks waited on other CPUs they
could have used, for longer than a transient.

Per sample interval and per group of CPUs the live workers could move between (see
``cpu_load.components``), the wasted capacity is ``min(idle CPUs, queued tasks)``: idle
share summed over the group against run-queue wait summed over it.  A correct
scheduler pulls a waiting task onto an idle CPU within milliseconds, so only a waste
sustained over ``work_conservation.window_s`` counts; the limit is a number of CPUs,
at least ``work_conservation.max_idle_cpus`` and at most a fraction of the group.
Only CPUs idle for most of an interval count, and intervals just after a placement
change (spawn, cpuset, affinity, move: ``cpu_load.settled``) are left out.

A worker held back by an enforced cpu.max quota (quota.py) waits on purpose: a cgroup
of four spinners limited to one CPU leaves three CPUs idle while its workers are
runnable.  Each such worker takes up to ``1 - its share`` off the group's queue (its
share: the quota's CPUs over the workers under it), so only waiting beyond what the
quota explains counts.

Reads: ``timeline[].at_s, util, schedstat``, ``workers[].start_s, end_s, cgroup_path``,
``events`` (cpusets, affinity, moves, stops), ``observed_topology.cpus``.
"""

from __future__ import annotations

from ktstr.checks import cpu_load, quota
from ktstr.checks.model import FAIL, PASS, SKIP, Finding


def wasted(record: dict, th: dict) -> list[tuple[float, float, float, frozenset[int]]]:
    """(start, end, idle CPUs while tasks waited, the group) per interval and CPU group.

    Only a CPU idle for most of the interval (``min_idle_share``) is idle capacity: a CPU
    that idles between wakeups and a queue that forms between them need not overlap,
    while a CPU nobody gives work to stays idle throughout.
    """
    ncpus = (record.get("observed_topology") or {}).get("cpus") or 0
    mostly = th["work_conservation.min_idle_share"]
    lim = quota.limits(record)
    out = []
    for iv in cpu_load.settled(record, th["work_conservation.settle_s"]):
        live = cpu_load.live_workers(record, iv.start_s, iv.end_s)
        if not live:
            continue
        sets = cpu_load.allowed_sets(record, live, iv.start_s, ncpus)
        for group in cpu_load.components(sets):
            idle = sum(iv.idle.get(c, 0.0) for c in group if iv.idle.get(c, 0.0) >= mostly)
            queued = sum(iv.queued.get(c, 0.0) for c in group)
            if lim:  # the waiting a quota explains
                queued -= sum(
                    1 - quota.share(record, w, iv.start_s, iv.end_s, lim)
                    for w, cpus in zip(live, sets, strict=True)
                    if cpus & group
                )
            out.append((iv.start_s, iv.end_s, min(idle, max(0.0, queued)), group))
    return out


def sustained(spans: list[tuple[float, float, float]], window: float) -> tuple[float, float, float]:
    """The worst time-weighted mean of ``value`` over any ``window`` seconds of spans
    (start, end, value), with where that window starts: (mean, start, end)."""
    worst = (0.0, 0.0, 0.0)
    for i, (start, _, _) in enumerate(spans):
        covered, total = 0.0, 0.0
        for s, e, v in spans[i:]:
            if s >= start + window:
                break
            part = min(e, start + window) - s
            covered += part
            total += part * v
        if covered >= window * 0.75 and total / covered > worst[0]:
            worst = (total / covered, start, start + window)
    return worst


def work_conservation(record: dict, th: dict) -> list[Finding]:
    window = th["work_conservation.window_s"]
    per_group: dict[frozenset[int], list[tuple[float, float, float]]] = {}
    for start, end, waste, group in wasted(record, th):
        per_group.setdefault(group, []).append((start, end, waste))
    if not per_group:
        return [
            Finding(
                "work_conservation",
                SKIP,
                "not_applicable",
                "no per-CPU samples while workers ran, so idle capacity cannot be judged",
            )
        ]
    out, worst = [], 0.0
    for group, spans in sorted(per_group.items(), key=lambda kv: sorted(kv[0])):
        limit = max(
            th["work_conservation.max_idle_cpus"],
            th["work_conservation.max_idle_fraction"] * len(group),
        )
        mean, start, end = sustained(spans, window)
        worst = max(worst, mean)
        if mean > limit:
            cpus = sorted(group)
            out.append(
                Finding(
                    "work_conservation",
                    FAIL,
                    "idle_while_waiting",
                    f"CPUs {cpus[0]}-{cpus[-1]}: {mean:.1f} CPUs idle on average while tasks "
                    f"waited in run queues, for {window:.0f} s from +{start:.1f} s "
                    f"(limit {limit:.1f})",
                    at_s=round(start, 3),
                    value=round(mean, 2),
                    limit=round(limit, 2),
                )
            )
    if not out:
        out.append(
            Finding(
                "work_conservation",
                PASS,
                "ok",
                f"at most {worst:.2f} CPUs idle while tasks waited, over any {window:.0f} s",
                value=round(worst, 2),
            )
        )
    return out
