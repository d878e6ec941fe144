"""The checks: RunRecord -> findings -> verdict."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable

from ktstr.checks import timeline as tl
from ktstr.checks.disks import disk_errors, io_throughput
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, SKIP, Finding, Verdict
from ktstr.checks.thresholds import merged

CPU_BOUND = {"spin", "cache_pressure", "mixed", "yield_heavy"}

# Kernel log patterns: (kind, regex). Data, so a user can extend or allow lines.
KERNEL_DENY: list[tuple[str, str]] = [
    ("panic", r"Kernel panic - not syncing"),
    ("oops", r"\bOops:"),
    ("bug", r"\bBUG: |kernel BUG at"),
    ("warning", r"WARNING: CPU: \d+ PID: \d+|------------\[ cut here \]------------"),
    ("rcu_stall", r"rcu: INFO: .*detected stalls?|self-detected stall"),
    ("soft_lockup", r"soft lockup - CPU#"),
    ("hung_task", r"INFO: task .+ blocked for more than \d+ seconds"),
    ("gpf", r"general protection fault"),
]
# Lines that match a deny pattern but are known to be harmless.
KERNEL_ALLOW: list[str] = []
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")
_TASK = re.compile(r"\btask \S+:(\d+)\b")  # "INFO: task python3:107 blocked ..."


def _label(record: dict, wid: int) -> str:
    w = _workers(record).get(wid, {})
    return f"worker {wid} ({w.get('cgroup_path', '?')})"


def _workers(record: dict) -> dict[int, dict]:
    return {w["id"]: w for w in record.get("workers", [])}


def not_stuck(record: dict, th: dict) -> list[Finding]:
    limit_ms = th["not_stuck.max_gap_ms"]
    workers = record.get("workers", [])
    if not workers:
        return [Finding("not_stuck", INCONCLUSIVE, "no_workers", "the run recorded no workers")]
    duration = record.get("duration_s", 0.0)
    frozen = tl.windows(record, "freeze", "unfreeze", duration)
    stopped = tl.stopped_at(record)
    out, worst = [], 0.0
    for w in workers:
        wid, path = w["id"], w.get("cgroup_path", "?")
        if w.get("error"):
            out.append(
                Finding(
                    "not_stuck",
                    FAIL,
                    "worker_error",
                    f"{_label(record, wid)} failed: {w['error']}",
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
                    f"{_label(record, wid)} made no progress",
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
        gaps = [list(g) for g in w.get("gaps", [])]
        end = min(duration, stopped.get(wid, duration))
        tail = end - w.get("end_s", end)
        if tail > 0:
            gaps.append([tail, w["end_s"], None])
        for gap, at, cpu in sorted(gaps, key=lambda g: -g[0]):
            if any(at < b and at + gap > a for a, b in freeze):
                continue  # the cgroup was frozen on purpose
            worst = max(worst, gap * 1000)
            if gap * 1000 > limit_ms:
                where = f" on cpu {cpu}" if cpu is not None else ""
                out.append(
                    Finding(
                        "not_stuck",
                        FAIL,
                        "stuck",
                        f"{_label(record, wid)} stuck {gap * 1000:.0f} ms{where} at +{at:.1f} s "
                        f"(limit {limit_ms:.0f} ms)",
                        wid,
                        path,
                        cpu,
                        round(at, 3),
                        round(gap * 1000, 1),
                        limit_ms,
                    )
                )
            break
    if not any(f.status == FAIL for f in out):
        out.append(
            Finding(
                "not_stuck",
                PASS,
                "ok",
                f"longest gap {worst:.0f} ms",
                value=round(worst, 1),
                limit=limit_ms,
            )
        )
    return out


def _off_cpu_share(w: dict) -> float | None:
    wall = w.get("end_s", 0) - w.get("start_s", 0)
    cpu = w.get("cpu_time_ns")
    if not tl.finite(wall, cpu) or wall <= 0:
        return None
    return max(0.0, 1 - cpu / 1e9 / wall)


def fairness(record: dict, th: dict) -> list[Finding]:
    duration = record.get("duration_s") or th["fairness.reference_duration_s"]
    widen = max(1.0, math.sqrt(th["fairness.reference_duration_s"] / duration))
    limit = round(th["fairness.max_spread_pct"] * widen, 2)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        if w.get("work") in CPU_BOUND and not w.get("killed") and not w.get("error"):
            groups[(w.get("cgroup_path"), w["work"])].append(w)
    out, judged, worst = [], 0, 0.0
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
                "no cgroup has two or more equal CPU-bound workers",
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


def weights(record: dict, th: dict) -> list[Finding]:
    """Sibling cgroups with different cpu.weight get CPU in proportion, when contended."""
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
    siblings: dict[str, list[str]] = defaultdict(list)
    for path in declared:
        siblings[path.rpartition("/")[0]].append(path)
    out = []
    by_path: dict[str, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        by_path[w.get("cgroup_path")].append(w)
    for group in siblings.values():
        if len(group) < 2 or len({declared[p] for p in group}) < 2:
            continue
        if not all(by_path[p] and all(w["work"] == "spin" for w in by_path[p]) for p in group):
            continue
        capacity = len(set().union(*(cpus.get(p, set()) for p in group))) or record.get(
            "observed_topology", {}
        ).get("cpus", 0)
        demand = {p: float(len(by_path[p])) for p in group}
        if sum(demand.values()) <= capacity:
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
                        f"{_label(record, wid)} ran on cpu {cpu} at +{at:.1f} s, outside its "
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


def kernel_health(record: dict, th: dict) -> list[Finding]:
    out, seen = [], set()
    pids = {w["pid"]: w["id"] for w in record.get("workers", []) if w.get("pid")}
    allow = [re.compile(a) for a in KERNEL_ALLOW + record.get("kernel_allow", [])]
    for line in record.get("console", []):
        for kind, pattern in KERNEL_DENY:
            if kind in seen or not re.search(pattern, line):
                continue
            if any(a.search(line) for a in allow):
                continue
            seen.add(kind)
            stamp = _STAMP.match(line)
            task = _TASK.search(line)
            worker = pids.get(int(task.group(1))) if task else None
            whose = f" ({_label(record, worker)})" if worker is not None else ""
            out.append(
                Finding(
                    "kernel_health",
                    FAIL,
                    kind,
                    f"kernel {kind}: {line.strip()}{whose}",
                    worker=worker,
                    at_s=float(stamp.group(1)) if stamp else None,
                )
            )
    if not out:
        out.append(
            Finding(
                "kernel_health",
                PASS,
                "ok",
                f"{len(record.get('console', []))} console lines, none alarming",
            )
        )
    return out


def optional(record: dict, th: dict) -> list[Finding]:
    out = []
    mig, lat, rate = (
        th["max_migration_ratio.limit"],
        th["max_p99_wake_latency_us.limit"],
        th["min_work_rate.limit"],
    )
    for w in record.get("workers", []):
        units, wid = w.get("units") or 0, w["id"]
        if mig and units and w.get("migrations", 0) / units > mig:
            out.append(
                Finding(
                    "max_migration_ratio",
                    FAIL,
                    "migrations",
                    f"{_label(record, wid)}: {w['migrations'] / units:.3f} migrations "
                    f"per unit (limit {mig})",
                    wid,
                    value=w["migrations"] / units,
                    limit=mig,
                )
            )
        wake = w.get("wake") or {}
        if lat and wake.get("p99_us", 0) > lat:
            out.append(
                Finding(
                    "max_p99_wake_latency_us",
                    FAIL,
                    "wake_latency",
                    f"{_label(record, wid)}: p99 wake latency {wake['p99_us']:.0f} us "
                    f"(limit {lat:.0f} us)",
                    wid,
                    value=wake["p99_us"],
                    limit=lat,
                )
            )
        wall = w.get("end_s", 0) - w.get("start_s", 0)
        if rate and wall > 0 and units / wall < rate:
            out.append(
                Finding(
                    "min_work_rate",
                    FAIL,
                    "slow",
                    f"{_label(record, wid)}: {units / wall:.1f} units/s (limit {rate})",
                    wid,
                    value=units / wall,
                    limit=rate,
                )
            )
    return out


CHECKS: dict[str, Callable[[dict, dict], list[Finding]]] = {
    "not_stuck": not_stuck,
    "fairness": fairness,
    "isolation": isolation,
    "kernel_health": kernel_health,
    "disk_errors": disk_errors,
}


def _refuse_bad_numbers(record: dict) -> list[Finding]:
    """A worker whose numbers are not finite cannot be judged; say so instead of guessing."""
    out = []
    for w in record.get("workers", []):
        bad = tl.bad_numbers(w)
        if bad:
            out.append(
                Finding(
                    "record",
                    INCONCLUSIVE,
                    "bad_data",
                    f"{_label(record, w['id'])}: {', '.join(bad)} not a finite number; "
                    "its other facts were left unjudged",
                    w["id"],
                    w.get("cgroup_path"),
                )
            )
    return out


def _uncalibrated(record: dict) -> list[Finding]:
    """Workers ran but the guest never timed its calibration loop: its speed is unknown.

    Without it nobody can tell an emulated guest's slowness from the scheduler's,
    so the verdict cannot be a clean pass.
    """
    cal = record.get("calibration")
    loop = cal.get("guest_loop_s") if cal is not None else None
    if cal is None or tl.finite(loop) and loop > 0 or not record.get("workers"):
        return []
    return [
        Finding(
            "calibration",
            INCONCLUSIVE,
            "uncalibrated",
            "the guest reported no calibration, so its speed relative to the host is unknown",
        )
    ]


def judge(
    record: dict, overrides: dict[str, float] | None = None, enabled: dict[str, bool] | None = None
) -> Verdict:
    """Run every enabled check over a record."""
    if record.get("skipped"):
        return Verdict.of([Finding("scenario", SKIP, "skipped", record["skipped"])])
    th = merged({**record.get("thresholds", {}), **(overrides or {})})
    findings = _refuse_bad_numbers(record)
    if findings:  # judge the rest; the verdict stays inconclusive
        bad = {f.worker for f in findings}
        record = {**record, "workers": [w for w in record["workers"] if w["id"] not in bad]}
    findings += _uncalibrated(record)
    for name, check in CHECKS.items():
        if (enabled or {}).get(name, True):
            findings += check(record, th)
    findings += optional(record, th) + io_throughput(record, th)
    return Verdict.of(findings)
