"""fairness: equal CPU-bound workers in one cgroup get equal shares of the CPU, and
sibling cgroups get CPU in proportion to ``cpu.weight`` (see weights.py).

Equal workers are compared only where they compete: where the CPU-bound workers that
may use their CPUs outnumber those CPUs.  Without contention each could have a CPU of
its own, and what they lose goes to other tasks (the agent, the scheduler's own
process), which says nothing about how the scheduler shares a CPU between them.

Reads: ``workers[].work, cgroup_path, start_s, end_s, cpu_time_ns, killed, error``,
``duration_s``; weights.py reads more.
"""

from __future__ import annotations

import math
from collections import defaultdict

from ktstr.checks import cpu_load
from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, SKIP, Finding
from ktstr.checks.weights import weights
from ktstr.checks.workers import CPU_BOUND


def _off_cpu_share(w: dict) -> float | None:
    wall = w.get("end_s", 0) - w.get("start_s", 0)
    cpu = w.get("cpu_time_ns")
    if not tl.finite(wall, cpu) or wall <= 0:
        return None
    return max(0.0, 1 - cpu / 1e9 / wall)


def _contended(record: dict, members: list[dict], everyone: list[dict]) -> bool:
    """More CPU-bound workers may use the members' CPUs than there are of them."""
    ncpus = (record.get("observed_topology") or {}).get("cpus") or 0
    if not ncpus:
        return True  # nothing to tell it by: judge, as before
    start = min(w.get("start_s", 0.0) for w in members)
    mine = frozenset().union(*cpu_load.allowed_sets(record, members, start, ncpus))
    theirs = cpu_load.allowed_sets(record, everyone, start, ncpus)
    return sum(1 for cpus in theirs if cpus & mine) > len(mine)


def fairness(record: dict, th: dict) -> list[Finding]:
    duration = record.get("duration_s") or th["fairness.reference_duration_s"]
    widen = max(1.0, math.sqrt(th["fairness.reference_duration_s"] / duration))
    limit = round(th["fairness.max_spread_pct"] * widen, 2)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        if w.get("work") in CPU_BOUND and not w.get("killed") and not w.get("error"):
            groups[(w.get("cgroup_path"), w["work"])].append(w)
    out, judged, worst, uncontended = [], 0, 0.0, 0
    everyone = [w for ws in groups.values() for w in ws]
    for (path, kind), members in sorted(groups.items()):
        if len(members) < th["fairness.min_workers"]:
            continue
        shares = [_off_cpu_share(w) for w in members]
        if any(s is None for s in shares) or all(not w.get("cpu_time_ns") for w in members):
            out.append(
                Finding(
                    "fairness",
                    INCONCLUSIVE,
                    "bad_data",
                    f"cgroup {path}: a worker has no usable CPU time, or none of them ran",
                    cgroup=path,
                )
            )
            continue
        if not _contended(record, members, everyone):
            uncontended += 1
            continue
        judged += 1
        spread = (max(shares) - min(shares)) * 100
        worst = max(worst, spread)
        if spread > limit:
            lo = members[shares.index(min(shares))]["id"]
            hi = members[shares.index(max(shares))]["id"]
            out.append(
                Finding(
                    "fairness",
                    FAIL,
                    "unfair",
                    f"cgroup {path}: off-CPU share of its {len(members)} {kind} workers spreads "
                    f"{spread:.1f} points (worker {lo} {min(shares):.0%}, worker {hi} "
                    f"{max(shares):.0%}; limit {limit:.0f})",
                    cgroup=path,
                    value=round(spread, 2),
                    limit=limit,
                )
            )
    weighed = weights(record, th)
    out += [f for f in weighed if f.status != PASS]
    weights_ok = [f for f in weighed if f.status == PASS]
    if not judged and not out and not weights_ok:
        return [
            Finding(
                "fairness",
                SKIP,
                "not_applicable",
                "no cgroup has two or more equal CPU-bound workers"
                + (
                    f" competing for their CPUs ({uncontended} had a CPU each)"
                    if uncontended
                    else ""
                ),
            )
        ]
    if not any(f.status in (FAIL, INCONCLUSIVE) for f in out):
        out.append(
            Finding(
                "fairness",
                PASS,
                "ok",
                (f"worst spread {worst:.1f} points" if judged else "no equal workers to compare")
                + "".join(f"; {f.message}" for f in weights_ok),
                value=round(worst, 2) if judged else None,
                limit=limit if judged else None,
            )
        )
    return out + weights_ok
