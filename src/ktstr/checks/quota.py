"""cpu.max quotas the scenario set and the kernel enforced: what a throttled cgroup's
workers can get, so the checks expect that rather than what a free cgroup would get.

The amounts and when they were set come from the plan (the host's own data, never the
guest's).  A quota counts only where it bit: some worker of the cgroup reports throttled
periods of it (``workers[].throttled``, cpu.stat read by the worker as it ends).  A
quota that never bit left the cgroup free, and a sched_ext scheduler without bandwidth
control does not enforce it at all: then the cgroup is judged as a free one, and a
scheduler cannot excuse starvation by a quota the scenario never set.

Reads: ``plan.steps`` (cpu.max of add_cgroup and set_controls, remove_cgroup),
``workers[].throttled, cgroup_path``.
"""

from __future__ import annotations

from ktstr.checks import timeline as tl

# path -> [(since s, CPUs the quota allows, or None once the cgroup is gone)]
Limits = dict[str, list[tuple[float, float | None]]]


def _cpus(text: object) -> float | None:
    """``"50000 100000"`` -> 0.5 CPUs; anything else (``max``, nonsense) -> None."""
    parts = str(text).split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) <= 0:
        return None
    return int(parts[0]) / int(parts[1])


def _rounds(record: dict) -> list[tuple[float, list[dict]]]:
    out = []
    for step in (record.get("plan") or {}).get("steps", []):
        out.append((step.get("start_s", 0.0), step.get("ops", [])))
        out += [(r.get("at_s", 0.0), r.get("ops", [])) for r in step.get("repeats", [])]
    return sorted(out, key=lambda r: r[0])


def idle(record: dict) -> set[str]:
    """Cgroups the scenario set ``cpu.idle`` on at some time: the kernel runs them at the
    lowest weight, like SCHED_IDLE tasks, so cpu.weight does not govern them."""
    return {
        op.get("path")
        for _, ops in _rounds(record)
        for op in ops
        if (op.get("controls") or {}).get("cpu.idle") == "1"
    }


def enforced(record: dict) -> set[str]:
    """Cgroups whose quota throttled them at least once, as their workers saw it."""
    out = set()
    for w in record.get("workers", []):
        for path, stat in (w.get("throttled") or {}).items():
            if isinstance(stat, list) and len(stat) >= 2 and tl.finite(stat[1]) and stat[1] > 0:
                out.add(path)
    return out


def limits(record: dict) -> Limits:
    """Each enforced quota over time, from the plan."""
    bit = enforced(record)
    out: Limits = {}
    for at, ops in _rounds(record):
        for op in ops:
            path = op.get("path")
            if op.get("op") == "remove_cgroup":
                for p in out:
                    if p == path or p.startswith(f"{path}/"):
                        out[p].append((at, None))
            elif path in bit and "cpu.max" in (op.get("controls") or {}):
                out.setdefault(path, []).append((at, _cpus(op["controls"]["cpu.max"])))
    return out


def _in_force(changes: list[tuple[float, float | None]], start: float, end: float) -> list:
    """The quotas in force at some time in [start, end]."""
    before = [c for at, c in changes if at <= start]
    return ([before[-1]] if before else []) + [c for at, c in changes if start < at <= end]


def share(record: dict, worker: dict, start: float, end: float, lim: Limits | None = None) -> float:
    """The least share of one CPU the worker could get in [start, end] under the quotas
    of its cgroup and its ancestors: a quota's CPUs spread over the workers under it
    that ran at some time in [start, end] (1.0 when no quota bit)."""
    lim = limits(record) if lim is None else lim
    best, workers = 1.0, record.get("workers", [])
    for node, changes in lim.items():
        if not _under(worker, node):
            continue
        under = sum(1 for w in workers if _under(w, node) and _ran_within(w, start, end))
        for cpus in _in_force(changes, start, end):
            if cpus is not None and under:
                best = min(best, cpus / under)
    return best


def _ran_within(worker: dict, start: float, end: float) -> bool:
    """Whether the worker ran at some time in [start, end] (unknown times: yes)."""
    began, ended = worker.get("start_s"), worker.get("end_s")
    if not tl.finite(began, ended):
        return True
    return began <= end and ended >= start


def _under(worker: dict, node: str) -> bool:
    path = worker.get("cgroup_path") or ""
    return path == node or path.startswith(f"{node}/")


def limited(record: dict, lim: Limits | None = None) -> set[str]:
    """The cgroups (and their descendants) some enforced quota held back."""
    lim = limits(record) if lim is None else lim
    paths = {w.get("cgroup_path") or "" for w in record.get("workers", [])}
    return {p for p in paths for node in lim if p == node or p.startswith(f"{node}/")}


def cap(record: dict, path: str, lim: Limits | None = None) -> float | None:
    """The fewest CPUs a quota on the cgroup or an ancestor allowed it during the run."""
    lim = limits(record) if lim is None else lim
    caps = [
        c
        for node, changes in lim.items()
        if path == node or path.startswith(f"{node}/")
        for _, c in changes
        if c is not None
    ]
    return min(caps) if caps else None


def changed(record: dict, path: str, lim: Limits | None = None) -> bool:
    """Whether the quota over the cgroup changed during the run (whole-run shares then
    mix two limits)."""
    lim = limits(record) if lim is None else lim
    return any(
        len({c for _, c in changes}) > 1
        for node, changes in lim.items()
        if path == node or path.startswith(f"{node}/")
    )


def scaled(worker: dict, share_of_cpu: float) -> dict:
    """The worker with its CPU time counted as the wall time its quota share needed to
    give it that much (CPU time over the share): a gap less that is waiting the quota
    does not explain.  A starved worker ran nothing, so its whole gap still counts."""
    if share_of_cpu >= 1.0 or share_of_cpu <= 0.0:
        return worker

    def stretch(ns: object) -> object:
        return ns / share_of_cpu if tl.finite(ns) else ns

    out = dict(worker)
    out["progress"] = [
        [*p[:3], stretch(p[3]), *p[4:]] if len(p) >= 4 else p for p in worker.get("progress") or []
    ]
    if "released_cpu_ns" in worker:
        out["released_cpu_ns"] = stretch(worker["released_cpu_ns"])
    out["gaps"] = [  # [gap, at, cpu, CPU s in it, departures]
        [*g[:3], stretch(g[3]), *g[4:]] if len(g) >= 5 else g for g in worker.get("gaps") or []
    ]
    return out
