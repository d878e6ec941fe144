"""isolation: every worker ran only on CPUs its cgroup's cpuset (and its own affinity)
allowed at that moment, give or take a grace after each change: a change counts from
when its op began to when it returned (the kernel moves the affected tasks one by one
before the write returns), plus the grace.

Reads: ``workers[].residency, progress, cgroup_path``, ``events`` (cgroup moves, cpuset
and affinity changes), ``observed_topology.cpus`` (else ``plan.layout.cpus``).
"""

from __future__ import annotations

from bisect import bisect_right

from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding
from ktstr.checks.workers import label

_BEFORE = 1e-6  # a moment before a change, when the old setting still held


def _where_it_ran(worker: dict) -> list[tuple[float, int]]:
    """(time, CPU) whenever the worker is known to have been running on that CPU.

    Residency notes each move; progress points note the CPU every tenth of a
    second, so a worker left on a CPU its new cpuset lacks is seen there too.
    """
    seen = [(at, cpu) for at, cpu in worker.get("residency", [])]
    seen += [(p[0], p[2]) for p in worker.get("progress", []) if len(p) > 2 and p[2] is not None]
    return sorted(seen, key=lambda s: s[0])


def _allowed_at(
    t: float,
    history: list[tuple[float, str]],
    affinity: list[tuple[float, frozenset[int]]],
    cpusets: dict[str, list[tuple[float, frozenset[int]]]],
    everything: frozenset[int],
) -> frozenset[int]:
    """The CPUs the kernel lets a worker use at one moment."""
    node = tl.path_at(history, t)
    while node and node not in cpusets:  # the nearest ancestor with a cpuset decides
        node = node.rpartition("/")[0]
    cpus = tl.set_at(cpusets[node], t, everything) if node else everything
    # The kernel ignores an affinity that shares no CPU with the cpuset.
    return cpus & tl.set_at(affinity, t, everything) or cpus


def isolation(record: dict, th: dict) -> list[Finding]:
    grace = th["isolation.grace_ms"] / 1000
    ncpus = record.get("observed_topology", {}).get("cpus") or record.get("plan", {}).get(
        "layout", {}
    ).get("cpus", 0)
    everything = frozenset(range(ncpus))
    cpusets = tl.cpuset_changes(record, ncpus)
    affinity = tl.affinity_changes(record)
    paths = tl.worker_paths(record)
    done = tl.done_times(record)
    out, checked = [], 0
    for w in record.get("workers", []):
        wid = w["id"]
        history = paths.get(wid) or [(0.0, w.get("cgroup_path", ""))]
        own_affinity = affinity.get(wid, [])
        changes = sorted(
            {since for since, _ in history}
            | {since for since, _ in own_affinity}
            | {since for node_changes in cpusets.values() for since, _ in node_changes}
        )
        for at, cpu in _where_it_ran(w):
            path = tl.path_at(history, at)
            # Anything allowed at some moment of the grace before it counts: the kernel
            # needs a moment to move a task after its cgroup, cpuset or affinity changed.
            moments = [at - grace] + changes[
                bisect_right(changes, at - grace) : bisect_right(changes, at)
            ]
            # What was allowed before a change stays allowed until its write returned.
            moments += [
                since - _BEFORE
                for since in changes[: bisect_right(changes, at - grace)]
                if done.get(since, since) + grace >= at
            ]
            allowed = frozenset().union(
                *(_allowed_at(t, history, own_affinity, cpusets, everything) for t in moments)
            )
            checked += 1
            if cpu not in allowed:
                out.append(
                    Finding(
                        "isolation",
                        FAIL,
                        "escaped_cpuset",
                        f"{label(record, wid)} ran on cpu {cpu} at +{at:.1f} s, outside its "
                        f"allowed CPUs {sorted(allowed)}",
                        wid,
                        path,
                        cpu,
                        round(at, 3),
                    )
                )
                break
    if not checked:
        return [Finding("isolation", INCONCLUSIVE, "no_data", "no CPU residency was recorded")]
    if not out:
        out.append(
            Finding(
                "isolation",
                PASS,
                "ok",
                f"{checked} observations of where workers ran, all on allowed CPUs",
            )
        )
    return out
