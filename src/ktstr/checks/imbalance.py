"""imbalance: within a group of CPUs the workers could share, the busiest CPU carried
many times the runnable tasks of the least busy one, for longer than a transient.

A CPU's load over a window is its busy share plus its average run-queue wait (the
average number of runnable tasks there).  Judged only where the group is
oversubscribed (at least one runnable task per CPU on average), because with fewer
tasks than CPUs some CPUs are rightly idle: that case is work_conservation's.
The least busy CPU's load is floored at ``imbalance.min_load`` so one idle moment does
not make the ratio infinite.  Windows within ``imbalance.settle_s`` of a placement
change (spawn, cpuset, affinity, move) are left out: the tasks are still moving.

Reads: ``timeline[].at_s, util, schedstat``, ``workers[].start_s, end_s, cgroup_path``,
``events``, ``observed_topology.cpus``.
"""

from __future__ import annotations

from ktstr.checks import cpu_load
from ktstr.checks.model import FAIL, PASS, SKIP, Finding


def _windows(record: dict, window: float, settle_s: float):
    """(start, group, per-CPU mean load) for every window of full length, per CPU group."""
    ncpus = (record.get("observed_topology") or {}).get("cpus") or 0
    ivs = cpu_load.settled(record, settle_s)
    for i, first in enumerate(ivs):
        span = [iv for iv in ivs[i:] if iv.end_s <= first.start_s + window]
        covered = sum(iv.length for iv in span)
        if not span or covered < window * 0.9:
            continue  # a window with a placement change in it
        live = cpu_load.live_workers(record, first.start_s, span[-1].end_s)
        if not live:
            continue
        total = sum(iv.length for iv in span)
        for group in cpu_load.components(cpu_load.allowed_sets(record, live, first.start_s, ncpus)):
            load = {
                c: sum(
                    ((1 - iv.idle.get(c, 1.0)) + iv.queued.get(c, 0.0)) * iv.length for iv in span
                )
                / total
                for c in group
            }
            yield first.start_s, group, load


def imbalance(record: dict, th: dict) -> list[Finding]:
    window, limit, floor = (
        th["imbalance.window_s"],
        th["imbalance.max_ratio"],
        th["imbalance.min_load"],
    )
    out, worst, judged = [], 0.0, 0
    failed: set[frozenset[int]] = set()
    for start, group, load in _windows(record, window, th["imbalance.settle_s"]):
        if len(group) < 2 or sum(load.values()) < len(group):
            continue  # not oversubscribed: idle CPUs are work_conservation's business
        judged += 1
        busiest = max(load, key=load.get)
        least = min(load, key=load.get)
        ratio = load[busiest] / max(load[least], floor)
        worst = max(worst, ratio)
        if ratio > limit and group not in failed:
            failed.add(group)
            out.append(
                Finding(
                    "imbalance",
                    FAIL,
                    "imbalanced",
                    f"cpu {busiest} carried {load[busiest]:.1f} runnable tasks on average and "
                    f"cpu {least} {load[least]:.1f} for {window:.0f} s from +{start:.1f} s "
                    f"(ratio {ratio:.1f}, limit {limit:g})",
                    cpu=busiest,
                    at_s=round(start, 3),
                    value=round(ratio, 2),
                    limit=limit,
                )
            )
    if not judged:
        return [
            Finding(
                "imbalance",
                SKIP,
                "not_applicable",
                "no CPU group had at least one runnable task per CPU for a whole window",
            )
        ]
    if not out:
        out.append(
            Finding(
                "imbalance",
                PASS,
                "ok",
                f"busiest/least busy CPU load at most {worst:.1f} over any {window:.0f} s",
                value=round(worst, 2),
                limit=limit,
            )
        )
    return out
