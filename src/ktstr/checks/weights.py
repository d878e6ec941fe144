"""Weights: sibling cgroups with different ``cpu.weight`` share contended CPUs in
proportion.  Judged under the fairness check (its findings carry ``check="fairness"``).

Reads: ``events`` (add_cgroup with cpus and weight, set_weight), ``plan.steps`` (declared
weights), ``workers[].cgroup_path, work, cpu_time_ns``, ``observed_topology.cpus``.
"""

from __future__ import annotations

from collections import defaultdict

from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding


def _water_fill(capacity: float, weights: dict[str, float], caps: dict[str, float]) -> dict:
    alloc = dict.fromkeys(weights, 0.0)
    active = set(weights)
    left = capacity
    while active and left > 1e-9:
        total = sum(weights[g] for g in active)
        share = {g: left * weights[g] / total for g in active}
        capped = {g for g in active if alloc[g] + share[g] >= caps[g]}
        if not capped:
            for g in active:
                alloc[g] += share[g]
            break
        for g in capped:
            left -= caps[g] - alloc[g]
            alloc[g] = caps[g]
        active -= capped
    return alloc


# The cgroup v2 default cpu.weight.
DEFAULT_WEIGHT = 100.0
# Only ops that make a cgroup and fill it leave its share of the run comparable.
_SETUP_OPS = ("add_cgroup", "spawn")


def _weighed(worker: dict) -> bool:
    """A spinner that cpu.weight governs: not real-time, deadline or SCHED_IDLE."""
    return worker["work"] == "spin" and worker.get("policy", "normal") not in (
        "fifo",
        "rr",
        "deadline",
        "idle",
    )


def _whole_run(record: dict) -> set[str]:
    """Cgroups made at the start and left alone: no later op touched them."""
    made, touched = set(), set()
    for ev in record.get("events", []):
        path = ev.get("path")
        if ev["op"] in _SETUP_OPS and ev.get("at_s", 0.0) <= 0.5:
            made.add(path)
        elif path is not None and ev["op"] != "start":
            touched |= {path, ev.get("dst")}
    return {p for p in made if not any(t and (p == t or p.startswith(t + "/")) for t in touched)}


def weights(record: dict, th: dict) -> list[Finding]:
    """Sibling cgroups get contended CPU in proportion to cpu.weight: different weights
    as declared, and equal ones (the default 100 included) equally when every sibling
    lived through the whole run untouched, so a scheduler that favours one cgroup fails."""
    tol = th["fairness.weight_tolerance_pct"]
    declared: dict[str, float] = {}
    cpus: dict[str, set[int]] = {}
    for ev in record.get("events", []):
        if ev["op"] == "add_cgroup":
            cpus[ev["path"]] = set(ev.get("cpus") or [])
        if ev["op"] in ("add_cgroup", "set_weight") and ev.get("weight"):
            declared[ev["path"]] = float(ev["weight"])
    spec_weights = {
        op["path"]: op["weight"]
        for step in record.get("plan", {}).get("steps", [])
        for op in step["ops"]
        if op["op"] == "add_cgroup" and op.get("weight")
    }
    declared.update({p: float(w) for p, w in spec_weights.items() if p not in declared})
    untouched = _whole_run(record)
    for path in cpus:
        if path not in declared and path in untouched:
            declared[path] = DEFAULT_WEIGHT
    siblings: dict[str, list[str]] = defaultdict(list)
    for path in declared:
        siblings[path.rpartition("/")[0]].append(path)
    out = []
    by_path: dict[str, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        by_path[w.get("cgroup_path")].append(w)
    for group in siblings.values():
        if len(group) < 2:
            continue
        if len({declared[p] for p in group}) < 2 and not set(group) <= untouched:
            continue
        if not all(by_path[p] and all(_weighed(w) for w in by_path[p]) for p in group):
            continue
        ncpus = (record.get("observed_topology") or {}).get("cpus", 0)
        # A cgroup without a cpuset may use every CPU; none can use more CPUs than its
        # cpuset has or than it has workers.
        usable = {p: len(cpus.get(p) or ()) or ncpus for p in group}
        capacity = (
            ncpus
            if any(not cpus.get(p) for p in group)
            else len(set().union(*(cpus[p] for p in group)))
        )
        demand = {p: float(min(len(by_path[p]), usable[p])) for p in group}
        if sum(float(len(by_path[p])) for p in group) <= capacity:
            continue  # not contended: weights do not matter
        expected = _water_fill(capacity, {p: declared[p] for p in group}, demand)
        measured = {p: sum(w.get("cpu_time_ns", 0) for w in by_path[p]) / 1e9 for p in group}
        total_m, total_e = sum(measured.values()), sum(expected.values())
        if total_m <= 0:
            out.append(
                Finding("fairness", INCONCLUSIVE, "bad_data", "weighted cgroups used no CPU time")
            )
            continue
        shares = []
        for p in group:
            want = expected[p] / total_e
            got = measured[p] / total_m
            dev = abs(got / want - 1) * 100 if want else 0.0
            shares.append((p, got, want, dev))
            if dev > tol:
                out.append(
                    Finding(
                        "fairness",
                        FAIL,
                        "weight_mismatch",
                        f"cgroup {p} (cpu.weight {declared[p]:.0f}) got {got:.0%} of its siblings' "
                        f"CPU time, expected {want:.0%} (off by {dev:.0f}%, limit {tol:.0f}%)",
                        cgroup=p,
                        value=round(dev, 1),
                        limit=tol,
                    )
                )
        if all(dev <= tol for *_, dev in shares):
            out.append(
                Finding(
                    "fairness",
                    PASS,
                    "weights_ok",
                    "cpu.weight "
                    + ":".join(f"{declared[p]:.0f}" for p, *_ in shares)
                    + " got "
                    + ":".join(f"{got:.0%}" for _, got, _, _ in shares)
                    + " of the CPU time, expected "
                    + ":".join(f"{want:.0%}" for _, _, want, _ in shares),
                    value=round(max(dev for *_, dev in shares), 1),
                    limit=tol,
                )
            )
    return out
