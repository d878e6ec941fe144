"""Weights: sibling cgroups with different ``cpu.weight`` share contended CPUs in
proportion.  Judged under the fairness check (its findings carry ``check="fairness"``).

Whole-run shares also carry placement: a load balancer that leaves light tasks alone on
a CPU for seconds gives their cgroup more than its weight although every CPU is shared
by weight (EEVDF on 8 vCPUs: a 100:300 pair got 31 %:69 %).  So a mismatch is judged
again where the siblings' workers shared a CPU (colocated.py): two tasks on one CPU get
CPU in proportion to their per-task weights (the cgroup's weight over its worker count,
as both the kernel's group scheduling and a flattened hierarchy give), whatever else the
CPU holds.  A mismatch there fails; one that sharing explains passes and says so.  Where
some worker hardly shared a CPU with another cgroup's (one global queue), the whole-run
shares decide.

A cgroup held back by a cpu.max quota the kernel enforced (quota.py) can use no more
CPUs than its quota allows: that caps it in the water-filling like its worker count,
its siblings get what it leaves, and its workers are not compared on shared CPUs (a
throttled task's co-runners run while it waits on purpose).  A quota that changed
during the run leaves whole-run shares that mix two limits, so such siblings are not
weighed; nor are siblings of a ``cpu.idle`` cgroup (it runs at the lowest weight, as
SCHED_IDLE workers do).

Reads: ``events`` (add_cgroup with cpus and weight, set_weight), ``plan.steps`` (declared
weights), ``workers[].cgroup_path, work, cpu_time_ns``, ``observed_topology.cpus``;
colocated.py reads more.
"""

from __future__ import annotations

from collections import defaultdict

from ktstr.checks import colocated, quota
from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding
from ktstr.checks.thresholds import PROVEN_ONLY


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
    return worker.get("work") == "spin" and worker.get("policy", "normal") not in (
        "fifo",
        "rr",
        "deadline",
        "idle",
    )


def _whole_run(record: dict) -> set[str]:
    """Cgroups made at the start and left alone: no later op touched them.

    At the start means before the start gate opened (the ``start`` event): under
    emulation the first step's ops take a second or more to apply.
    """
    gate = next((ev.get("at_s") for ev in record.get("events", []) if ev["op"] == "start"), None)
    setup_until = gate if isinstance(gate, int | float) else 0.5
    made, touched = set(), set()
    for ev in record.get("events", []):
        path = ev.get("path")
        if ev["op"] in _SETUP_OPS and ev.get("at_s", 0.0) <= setup_until:
            made.add(path)
        elif path is not None and ev["op"] != "start":
            touched |= {path, ev.get("dst")}
    return {p for p in made if not any(t and (p == t or p.startswith(t + "/")) for t in touched)}


def _by_sharing(
    group: list[str], by_path: dict[str, list[dict]], declared: dict[str, float], th: dict
) -> tuple[bool, str] | None:
    """Whether siblings shared CPUs by weight where their workers met, and how it went;
    None when some worker hardly met another cgroup's on a CPU because it hardly stayed
    on one (a global queue: placement explains nothing then).  A worker that stayed put
    but met no other cgroup's worker (alone on a CPU) is placement's."""
    found = colocated.across({p: by_path[p] for p in group})
    need = th["fairness.min_shared_s"]
    if any(
        found.shared_s.get(w["id"], 0.0) < need and colocated.settled_s(w) < need
        for p in group
        for w in by_path[p]
    ):
        return None
    tol = th["fairness.weight_tolerance_pct"]
    worst, text = 0.0, []
    for (a, b), (got_a, got_b) in sorted(found.got.items()):
        want = (declared[a] / len(by_path[a])) / (declared[b] / len(by_path[b]))
        if not tl.finite(got_a, got_b) or got_b <= 0:
            return None
        dev = abs(got_a / got_b / want - 1) * 100
        worst = max(worst, dev)
        text.append(f"{a}:{b} tasks {got_a / got_b:.2f}, expected {want:.2f}")
    if not text:
        return None
    return worst <= tol, (
        f"sharing a CPU, {', '.join(text)} (off by {worst:.0f}% at most, limit {tol:.0f}%)"
    )


def _share(
    p: str, group: list[str], expected: dict, measured: dict, caps: dict
) -> tuple[str, float, float, float]:
    """(cgroup, share of the group's CPU time got, share expected, how far off in %).

    A cgroup its quota holds at its cap is judged only for getting less than the quota
    allows (a scheduler that starves it): the kernel hands bandwidth out in slices per
    CPU and checks it at ticks, so a throttled cgroup overshoots its quota (0.62 CPUs
    for 0.5 under emulation), which is no sibling's doing.  The others are judged among
    themselves, on what the held cgroups left.
    """
    held = {q for q in group if caps[q] is not None and expected[q] >= caps[q] - 1e-9}
    among = [q for q in group if q not in held] if p not in held else group

    def of(values: dict, within: list[str]) -> float:
        return values[p] / (sum(values[q] for q in within) or 1.0)

    want, got = of(expected, among), of(measured, among)
    off = 0.0 if not want else (1 - got / want) if p in held else abs(got / want - 1)
    return p, of(measured, group), of(expected, group), max(0.0, off) * 100


def _cap_text(cpus: float | None) -> str:
    return "" if cpus is None else f", cpu.max {cpus:g} CPUs"


def cgroup_weights(record: dict) -> tuple[dict[str, float], set[str]]:
    """Each cgroup's cpu.weight as declared (the default for one left untouched all run),
    and the cgroups that lived the whole run untouched."""
    declared: dict[str, float] = {}
    made: dict[str, None] = {}  # in the order they were made: findings come in that order
    for ev in record.get("events", []):
        if ev["op"] == "add_cgroup":
            made[ev["path"]] = None
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
    for path in made:
        if path not in declared and path in untouched:
            declared[path] = DEFAULT_WEIGHT
    return declared, untouched


def weights(record: dict, th: dict) -> list[Finding]:
    """Sibling cgroups get contended CPU in proportion to cpu.weight: different weights
    as declared, and equal ones (the default 100 included) equally when every sibling
    lived through the whole run untouched, so a scheduler that favours one cgroup fails."""
    tol = th["fairness.weight_tolerance_pct"]
    cpus: dict[str, set[int]] = {
        ev["path"]: set(ev.get("cpus") or [])
        for ev in record.get("events", [])
        if ev["op"] == "add_cgroup"
    }
    declared, untouched = cgroup_weights(record)
    siblings: dict[str, list[str]] = defaultdict(list)
    for path in declared:
        siblings[path.rpartition("/")[0]].append(path)
    out = []
    lim = quota.limits(record)
    held = quota.limited(record, lim)
    idle = quota.idle(record)
    caps = {p: quota.cap(record, p, lim) for p in declared}
    by_path: dict[str, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        by_path[w.get("cgroup_path")].append(w)
    for group in siblings.values():
        if len(group) < 2:
            continue
        if len({declared[p] for p in group}) < 2 and not set(group) <= untouched:
            continue
        if not all(
            by_path[p] and p not in idle and all(_weighed(w) for w in by_path[p]) for p in group
        ):
            continue  # a worker that failed (not_stuck says so) has no CPU time to weigh
        if any(quota.changed(record, p, lim) for p in group):
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
        demand = {p: float(min(len(by_path[p]), usable[p], caps[p] or usable[p])) for p in group}
        if sum(float(len(by_path[p])) for p in group) <= capacity:
            continue  # not contended: weights do not matter
        expected = _water_fill(capacity, {p: declared[p] for p in group}, demand)
        measured = {p: sum(w.get("cpu_time_ns", 0) for w in by_path[p]) / 1e9 for p in group}
        if sum(measured.values()) <= 0:
            out.append(
                Finding("fairness", INCONCLUSIVE, "bad_data", "weighted cgroups used no CPU time")
            )
            continue
        shares = [_share(p, group, expected, measured, caps) for p in group]
        mismatched = [share for share in shares if share[3] > tol]
        quotas = held & set(group)
        sharing = _by_sharing(group, by_path, declared, th) if mismatched and not quotas else None
        if sharing is None and th.get(PROVEN_ONLY):
            continue  # one step on its own: only what shared CPUs show counts
        if mismatched and (sharing is None or not sharing[0]):
            note = (
                sharing[1]
                if sharing
                else "a quota held some back, so only whole-run shares tell"
                if quotas
                else "too little time sharing a CPU to tell placement"
            )
            out += [
                Finding(
                    "fairness",
                    FAIL,
                    "weight_mismatch",
                    f"cgroup {p} (cpu.weight {declared[p]:.0f}{_cap_text(caps[p])}) got {got:.0%} "
                    "of its siblings' "
                    f"CPU time, expected {want:.0%} (off by {dev:.0f}%, limit {tol:.0f}%); {note}",
                    cgroup=p,
                    value=round(dev, 1),
                    limit=tol,
                )
                for p, got, want, dev in mismatched
            ]
            continue
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
                + ":".join(f"{want:.0%}" for _, _, want, _ in shares)
                + (f" (by placement; {sharing[1]})" if sharing else "")
                + "".join(
                    f"; {p} held to {caps[p]:g} CPUs by cpu.max (above it is the kernel's slack)"
                    for p in sorted(quotas)
                ),
                value=round(max(dev for *_, dev in shares), 1),
                limit=tol,
            )
        )
    return out
