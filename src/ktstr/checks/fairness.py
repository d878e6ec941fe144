"""fairness: equal CPU-bound workers in one cgroup get equal shares of the CPU, and
sibling cgroups get CPU in proportion to ``cpu.weight`` (see weights.py).

Equal workers are compared only where they compete: where the CPU-bound workers that
may use their CPUs outnumber those CPUs.  Without contention each could have a CPU of
its own, and what they lose goes to other tasks (the agent, the scheduler's own
process), which says nothing about how the scheduler shares a CPU between them.

A spread of off-CPU shares beyond the limit can come from placement alone (one CPU
with a spinner more than another, for seconds), so the workers are also compared while
they shared a CPU (colocated.py): unequal sharing there fails, with or without a spread
(two workers split 2:1 on a CPU that other tasks use too spread less than the limit).  Placement is
imbalance's and work_conservation's to judge.  Workers that stayed on CPUs but hardly
ever with a comparable co-runner (alone on a CPU, the lucky ones of an uneven
placement) are placement's too, and the rest are compared.  Workers that hardly ever
stayed on one CPU long enough to compare (a scheduler with one global queue moves them
every slice) leave the whole-run spread to decide: with a global queue, placement
cannot explain it.

A cgroup held back by an enforced cpu.max quota (quota.py) is contended when its
workers outnumber the CPUs its quota allows, and its workers are compared with each
other only, on shared CPUs: on one CPU they are throttled together and share equally,
while a free sibling's co-runner runs on while they wait on purpose.  Their whole-run
spread alone does not fail: the kernel hands the quota's runtime out in slices per
CPU, so workers on different CPUs get unequal parts of it.
Free workers beside quota-held ones get their CPU whenever the held ones are throttled,
however the kernel spread the quota's runtime over the CPUs; where the shared-CPU
comparison cannot tell, each one's CPU time is set against its part of the CPU time the
held workers left on the CPUs it stayed on (quota_room.py).  Workers of a ``cpu.idle``
cgroup run at the lowest weight, so they are no fair co-runners of another cgroup's
either.

Reads: ``workers[].work, cgroup_path, start_s, end_s, cpu_time_ns, killed, error``,
``duration_s``; colocated.py and weights.py read more.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from ktstr.checks import colocated, cpu_load, quota, quota_room
from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, SKIP, Finding
from ktstr.checks.thresholds import PROVEN_ONLY
from ktstr.checks.weights import cgroup_weights, weights
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
    allowed = quota.cap(record, members[0].get("cgroup_path") or "")
    if allowed is not None and len(members) > allowed:
        return True  # they compete for the quota's CPU time
    mine = frozenset().union(*cpu_load.allowed_sets(record, members, start, ncpus))
    theirs = cpu_load.allowed_sets(record, everyone, start, ncpus)
    return sum(1 for cpus in theirs if cpus & mine) > len(mine)


@dataclass(frozen=True)
class Sharing:
    """How a group's workers fared against each other on the CPUs they shared."""

    fair: bool
    ratio: float  # the highest worker ratio over the lowest
    text: str


def _peers(record: dict, members: list[dict], everyone: list[dict]) -> tuple[list, dict]:
    """Workers of sibling cgroups that compete as the members do (same work, policy and
    nice; both cgroups untouched all run), and every one's per-task weight (its cgroup's
    cpu.weight over the cgroup's workers): on a shared CPU they are fair co-runners too.
    Without them, members whose co-runners are mostly another cgroup's (two cgroups of
    spinners, two per CPU) would hardly ever be compared."""
    declared, untouched = cgroup_weights(record)
    held = quota.limited(record) | quota.idle(record)
    untouched = {p for p in untouched if p not in held}
    path = members[0].get("cgroup_path")
    if path not in untouched or path not in declared:
        return [], {}
    like = members[0]
    counts = Counter(w.get("cgroup_path") for w in everyone)
    peers = [
        w
        for w in everyone
        if w.get("cgroup_path") != path
        and w.get("cgroup_path") in untouched
        and w.get("cgroup_path") in declared
        and w.get("cgroup_path", "").rpartition("/")[0] == path.rpartition("/")[0]
        and all(w.get(k) == like.get(k) for k in ("work", "policy", "nice"))
    ]
    weight = {
        w["id"]: declared[w["cgroup_path"]] / counts[w["cgroup_path"]] for w in members + peers
    }
    return peers, weight


def _room_sharing(
    record: dict, members: list[dict], everyone: list[dict], th: dict
) -> Sharing | None:
    """Judge members beside quota-held workers on their part of the CPU time those left
    them (quota_room.py); None without such workers, or too little time to tell."""
    held_paths = quota.limited(record)
    if not held_paths or members[0].get("cgroup_path") in held_paths:
        return None
    held = [w for w in everyone if w.get("cgroup_path") in held_paths]
    got = quota_room.room_ratios(members, held, th["fairness.min_shared_s"]) if held else None
    if not got or min(got.values()) <= 0:
        return None
    lo, hi = min(got, key=got.__getitem__), max(got, key=got.__getitem__)
    ratio, limit = got[hi] / got[lo], th["fairness.max_shared_ratio"]
    return Sharing(
        ratio <= limit,
        ratio,
        f"of the CPU time quota-held workers left them, worker {lo} got {got[lo]:.2f} and "
        f"worker {hi} {got[hi]:.2f} of its part (ratio {ratio:.2f}, limit {limit:g})",
    )


def _sharing(record: dict, members: list[dict], everyone: list[dict], th: dict) -> Sharing | None:
    """Judge the group on shared CPUs, or None when some worker hardly shared one."""
    found = colocated.compare(members, *_peers(record, members, everyone))
    need = th["fairness.min_shared_s"]
    if members[0].get("cgroup_path") in quota.limited(record):
        # a throttled worker gains CPU time, the evidence of how it shared, at its share's
        # pace, and a rate between its stamps spans whole throttled periods
        need /= min(quota.share(record, w, w.get("start_s", 0), w.get("end_s", 0)) for w in members)
    apart = [w for w in members if w["id"] not in found or found[w["id"]].shared_s < need]
    if any(colocated.settled_s(w) < need for w in apart):
        return None  # it hardly stayed on one CPU (a global queue): placement explains nothing
    # The others stayed on CPUs without a comparable co-runner (alone, say): placement.
    compared = [w for w in members if w not in apart]
    if len(compared) < 2:
        return None
    lo = min(compared, key=lambda w: found[w["id"]].ratio)["id"]
    hi = max(compared, key=lambda w: found[w["id"]].ratio)["id"]
    low, high = found[lo].ratio, found[hi].ratio
    if not tl.finite(low, high) or low <= 0:
        return None
    ratio = high / low
    limit = th["fairness.max_shared_ratio"]
    alone = (
        f"; worker{'s' if len(apart) > 1 else ''} {', '.join(str(w['id']) for w in apart)} "
        "hardly shared a CPU with a comparable co-runner"
        if apart
        else ""
    )
    return Sharing(
        ratio <= limit,
        ratio,
        f"sharing a CPU, worker {lo} ran {low:.2f}x and worker {hi} {high:.2f}x "
        f"as much as their co-runners (ratio {ratio:.2f}, limit {limit:g}){alone}",
    )


def fairness(record: dict, th: dict) -> list[Finding]:
    duration = record.get("duration_s") or th["fairness.reference_duration_s"]
    widen = max(1.0, math.sqrt(th["fairness.reference_duration_s"] / duration))
    limit = round(th["fairness.max_spread_pct"] * widen, 2)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        if w.get("work") in CPU_BOUND and not w.get("killed") and not w.get("error"):
            groups[(w.get("cgroup_path"), w["work"])].append(w)
    out, judged, within, worst, uncontended = [], 0, 0, 0.0, 0
    placed: list[str] = []  # groups whose spread placement explains
    everyone = [w for ws in groups.values() for w in ws]
    held = quota.limited(record)
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
        sharing = _sharing(record, members, everyone, th) or _room_sharing(
            record, members, everyone, th
        )
        if sharing is None or sharing.fair:
            if spread <= limit:
                worst, within = max(worst, spread), within + 1
                continue
            if sharing is not None:
                placed.append(f"cgroup {path}: {spread:.1f} points by placement; {sharing.text}")
                continue
            if path in held:
                placed.append(
                    f"cgroup {path}: {spread:.1f} points under its cpu.max quota, whose runtime "
                    "the kernel hands out per CPU; too little time sharing a CPU to compare"
                )
                continue
            if th.get(PROVEN_ONLY):
                continue  # one step on its own: only what shared CPUs show counts
        if spread <= limit:
            # equal whole-run shares can hide unequal sharing: a pair split 2:1 on a CPU
            # that other tasks also use spreads less than the limit
            message = (
                f"cgroup {path}: {sharing.text} (off-CPU shares spread {spread:.1f} points, "
                f"within the limit of {limit:.0f})"
            )
        else:
            lo = members[shares.index(min(shares))]["id"]
            hi = members[shares.index(max(shares))]["id"]
            message = (
                f"cgroup {path}: off-CPU share of its {len(members)} {kind} workers spreads "
                f"{spread:.1f} points (worker {lo} {min(shares):.0%}, worker {hi} "
                f"{max(shares):.0%}; limit {limit:.0f}); "
                + (
                    sharing.text
                    if sharing
                    else "too little time sharing a CPU to tell placement apart"
                )
            )
        out.append(
            Finding(
                "fairness",
                FAIL,
                "unfair",
                message,
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
                "; ".join(
                    ([f"worst spread {worst:.1f} points"] if within else [])
                    + placed
                    + [f.message for f in weights_ok]
                )
                or "no equal workers to compare",
                value=round(worst, 2) if within else None,
                limit=limit if within else None,
            )
        )
    return out + weights_ok
