"""Per-worker facts over time, rebuilt from the record's event log."""

from __future__ import annotations

import math


def finite(*values: object) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


_NUMBERS = ("units", "cpu_time_ns", "wait_ns", "timeslices", "migrations", "start_s", "end_s")
_WAKE = ("p50_us", "p99_us", "max_us")


def _is_cpu(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def bad_numbers(worker: dict) -> list[str]:
    """The worker's fields the checks compute with that hold no finite number (NaN, inf, text).

    A missing field is not bad: each check decides what absence means.
    """
    bad = [k for k in _NUMBERS if worker.get(k) is not None and not finite(worker[k])]
    for i, gap in enumerate(worker.get("gaps") or []):
        if not finite(*gap[:2]):
            bad.append(f"gaps[{i}]")
            break
    for i, (at, cpu) in enumerate(worker.get("residency") or []):
        if not finite(at) or not _is_cpu(cpu):
            bad.append(f"residency[{i}]")
            break
    for i, point in enumerate(worker.get("progress") or []):
        cpu = point[2] if len(point) > 2 else None  # a stamp may not know its CPU
        if not finite(*point[:2]) or not (cpu is None or _is_cpu(cpu)):
            bad.append(f"progress[{i}]")
            break
    wake = worker.get("wake") or {}
    bad += [f"wake.{k}" for k in _WAKE if wake.get(k) is not None and not finite(wake[k])]
    return bad


def worker_paths(record: dict) -> dict[int, list[tuple[float, str]]]:
    """worker id -> [(since_s, cgroup path)] from spawn and move events."""
    out: dict[int, list[tuple[float, str]]] = {}
    for ev in record.get("events", []):
        if ev["op"] == "spawn":
            for wid in ev.get("ids", []):
                out[wid] = [(ev["at_s"], ev["path"])]
        elif ev["op"] == "move_tasks":
            for paths in out.values():
                if paths[-1][1] == ev["path"]:
                    paths.append((ev["at_s"], ev["dst"]))
        elif ev["op"] == "debug_escape_cpuset":
            paths = out.get(ev.get("worker"))
            if paths:  # still judged against the cgroup it escaped from
                paths.append((ev["at_s"], paths[-1][1]))
    return out


def done_times(record: dict) -> dict[float, float]:
    """An op's start -> when it returned, for ops that report both.

    A cgroup move, cpuset or affinity write returns once the kernel has moved
    the tasks it affects; before that a task may rightly run where the new
    setting forbids. Older records carry only the start.
    """
    out: dict[float, float] = {}
    for ev in record.get("events", []):
        at, done = ev.get("at_s"), ev.get("done_s")
        if finite(at, done) and done >= at:
            out[at] = max(done, out.get(at, done))
    return out


def path_at(paths: list[tuple[float, str]], t: float) -> str:
    current = paths[0][1]
    for since, path in paths:
        if since <= t:
            current = path
    return current


def cpuset_changes(record: dict, ncpus: int) -> dict[str, list[tuple[float, frozenset[int]]]]:
    """cgroup path -> [(since_s, allowed CPUs)] from add/set_cpuset events (effective CPUs)."""
    out: dict[str, list[tuple[float, frozenset[int]]]] = {}
    for ev in record.get("events", []):
        if ev["op"] in ("add_cgroup", "set_cpuset") and ev.get("cpus") is not None:
            cpus = frozenset(ev["cpus"]) or frozenset(range(ncpus))
            out.setdefault(ev["path"], []).append((ev["at_s"], cpus))
    return out


def affinity_changes(record: dict) -> dict[int, list[tuple[float, frozenset[int]]]]:
    """worker id -> [(since_s, CPUs it may run on)] from its spawn and set_affinity events.

    Affinity belongs to the task, not the cgroup: it moves with the worker,
    and workers spawned after a set_affinity keep their own.
    """
    out: dict[int, list[tuple[float, frozenset[int]]]] = {}
    paths = worker_paths(record)
    for ev in record.get("events", []):
        if ev["op"] == "spawn" and ev.get("affinity"):
            for wid in ev.get("ids", []):
                out.setdefault(wid, []).append((ev["at_s"], frozenset(ev["affinity"])))
        elif ev["op"] == "set_affinity":
            ids = ev.get("ids")
            if ids is None:  # older records: the cgroup's workers at that moment
                at = ev["at_s"]
                ids = [
                    w for w, p in paths.items() if p[0][0] <= at and path_at(p, at) == ev["path"]
                ]
            for wid in ids:
                out.setdefault(wid, []).append((ev["at_s"], frozenset(ev["cpus"])))
    return out


def set_at(
    changes: list[tuple[float, frozenset[int]]], t: float, everything: frozenset[int]
) -> frozenset[int]:
    """The CPU set in effect at ``t``: the last change at or before it, else every CPU."""
    current = everything
    for since, cpus in changes:
        if since <= t:
            current = cpus
    return current


def windows(record: dict, start_op: str, end_op: str, duration: float) -> dict[str, list]:
    """path -> [(from_s, to_s)] for paired ops such as freeze/unfreeze."""
    out: dict[str, list[list[float]]] = {}
    for ev in record.get("events", []):
        if ev["op"] == start_op:
            out.setdefault(ev["path"], []).append([ev["at_s"], duration])
        elif ev["op"] == end_op and out.get(ev["path"]):
            out[ev["path"]][-1][1] = ev["at_s"]
    return out


def stopped_at(record: dict) -> dict[int, float]:
    """worker id -> when an op stopped it (stop_workers, remove_cgroup)."""
    out: dict[int, float] = {}
    paths = worker_paths(record)
    for ev in record.get("events", []):
        if ev["op"] == "stop_workers":
            for wid in ev.get("ids", []):
                out.setdefault(wid, ev["at_s"])
        elif ev["op"] == "remove_cgroup":
            for wid, p in paths.items():
                if p[-1][1] == ev["path"] or p[-1][1].startswith(ev["path"] + "/"):
                    out.setdefault(wid, ev["at_s"])
    return out


def released_at(record: dict) -> dict[int, float]:
    """worker id -> when it was free to run: the start gate for the first step's workers
    (the ``start`` event), its spawn for workers of later steps."""
    start = next((ev["at_s"] for ev in record.get("events", []) if ev["op"] == "start"), None)
    out: dict[int, float] = {}
    for ev in record.get("events", []):
        if ev["op"] == "spawn" and finite(ev.get("at_s")):
            at = ev["at_s"] if start is None else max(ev["at_s"], start)
            for wid in ev.get("ids", []):
                out.setdefault(wid, at)
    return out
