"""Per-step verdicts: a scenario's steps judged one by one, and findings named by step.

Whole-run figures average over the steps: unfairness in one step of three, or a
cgroup starved of its weight only after a cpuset change, can hide in them.  So
the record is also cut at the plan's step boundaries and the checks whose
measures are aggregates over time (fairness with weights) judge each cut; a step
failing where the whole run passed adds that finding, named by its step.  Checks
that already look at every moment (not_stuck's gaps, work_conservation's and
imbalance's sliding windows, isolation) would find nothing new in a cut: their
findings are named by the step they happened in.

A cut keeps the workers' progress points inside the step and the last one before
it (the base its counts start from), recomputes units, CPU time, start and end
from them, and keeps the samples in the step and the one before; times are
shifted so the step starts at 0, and the history of earlier ops is kept (a
cgroup's cpuset, a worker's path), with spawns before the step moved to its
start: by then those workers were released.  Steps shorter than
``steps.min_judged_s`` are not judged on their own (too short for a share to
mean anything); neither is a scenario of one step.  A step fails only on what shared
CPUs show (unequal sharing, weights off where tasks met), over at least
``steps.min_shared_s`` of sharing per worker: a whole-step spread that sharing cannot
explain either way is too little data in a few seconds.

Reads: ``plan.steps[].start_s, hold_s, ops``, and what the judged checks read.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace

from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, Finding
from ktstr.checks.thresholds import PROVEN_ONLY


@dataclass(frozen=True)
class Step:
    number: int  # 1-based, as users count them
    label: str  # "step 2 (set_cpuset)"
    start_s: float
    end_s: float


def steps(record: dict) -> list[Step]:
    """The plan's steps with their time spans (the host's own plan, never the guest's)."""
    out = []
    for i, step in enumerate((record.get("plan") or {}).get("steps") or []):
        start, hold = step.get("start_s"), step.get("hold_s")
        if not tl.finite(start, hold):
            return []
        ops = list(dict.fromkeys(op.get("op", "?") for op in step.get("ops") or []))
        what = ", ".join(ops[:3]) + (", ..." if len(ops) > 3 else "") if ops else "hold"
        out.append(Step(i + 1, f"step {i + 1} ({what})", float(start), float(start + hold)))
    return out


def step_at(all_steps: list[Step], at: float) -> Step | None:
    """The step a moment belongs to (the first step also owns what came before it)."""
    starts = [s.start_s for s in all_steps]
    i = bisect_right(starts, at) - 1
    return all_steps[max(0, i)] if all_steps else None


def _cut_worker(w: dict, start: float, end: float) -> dict | None:
    points = [p for p in w.get("progress") or [] if len(p) >= 4 and tl.finite(p[0], p[1], p[3])]
    before = [p for p in points if p[0] <= start]
    inside = [p for p in points if start < p[0] <= end]
    if not inside:
        return None
    base = before[-1] if before else inside.pop(0)
    if not inside:
        return None
    last = inside[-1]

    def shift(at: float) -> float:
        return round(at - start, 6)

    residency = [r for r in w.get("residency") or [] if tl.finite(r[0])]
    earlier = [r for r in residency if r[0] <= start]
    cut = {
        **w,
        "units": max(0, last[1] - base[1]),
        "cpu_time_ns": max(0, last[3] - base[3]),
        "start_s": shift(base[0]),
        "end_s": shift(last[0]),
        "progress": [[shift(p[0]), *p[1:]] for p in [base, *inside]],
        "residency": [[shift(r[0]), *r[1:]] for r in earlier[-1:]]
        + [[shift(r[0]), *r[1:]] for r in residency if start < r[0] <= end],
        "gaps": [
            [g[0], shift(g[1]), *g[2:]]
            for g in w.get("gaps") or []
            if len(g) >= 2 and tl.finite(g[0], g[1]) and base[0] <= g[1] < last[0]
        ],
    }
    cut["migrations"] = len(cut["residency"]) - 1 if cut["residency"] else 0
    for key in ("wait_ns", "timeslices", "released_cpu_ns", "wake"):
        cut.pop(key, None)  # whole-run figures a step cannot split
    return cut


def cut(record: dict, step: Step) -> dict:
    """The record as if the run were this one step (times from its start)."""
    start, end = step.start_s, step.end_s
    events = []
    for ev in record.get("events") or []:
        if not tl.finite(ev.get("at_s")) or ev["at_s"] > end:
            continue
        moved = {**ev, "at_s": round(ev["at_s"] - start, 6)}
        if tl.finite(ev.get("done_s")):
            moved["done_s"] = round(ev["done_s"] - start, 6)
        if ev["op"] in ("spawn", "start") and ev["at_s"] < start:
            moved["at_s"] = moved["done_s"] = 0.0  # released before the step began
        events.append(moved)
    samples = [s for s in record.get("timeline") or [] if tl.finite(s.get("at_s"))]
    before = [s for s in samples if s["at_s"] <= start][-1:]
    timeline = [
        {**s, "at_s": round(s["at_s"] - start, 6)}
        for s in before + [s for s in samples if start < s["at_s"] <= end]
    ]
    workers = [c for w in record.get("workers") or [] if (c := _cut_worker(w, start, end))]
    plan = record.get("plan") or {}
    plan_steps = [  # quotas and other planned changes keep their places in time
        {
            **s,
            "start_s": round(s.get("start_s", 0.0) - start, 6),
            "repeats": [
                {**r, "at_s": round(r.get("at_s", 0.0) - start, 6)} for r in s.get("repeats") or []
            ],
        }
        for s in plan.get("steps") or []
    ]
    return {
        **record,
        "plan": {**plan, "steps": plan_steps},
        "duration_s": round(end - start, 6),
        "events": events,
        "timeline": timeline,
        "workers": workers,
        "findings": [],
    }


Judge = Callable[[dict, dict], list[Finding]]


def per_step(record: dict, th: dict, checks: dict[str, Judge], whole: list[Finding]) -> list:
    """Findings of ``checks`` that fail in some step but not over the whole run."""
    all_steps = steps(record)
    if len(all_steps) < 2:
        return []
    failed = {(f.check, f.kind, f.cgroup) for f in whole if f.status == FAIL}
    strict = {
        **th,
        PROVEN_ONLY: 1.0,
        "fairness.min_shared_s": max(th["fairness.min_shared_s"], th["steps.min_shared_s"]),
    }
    out = []
    for step in all_steps:
        if step.end_s - step.start_s < th["steps.min_judged_s"]:
            continue
        part = cut(record, step)
        for run in checks.values():
            for f in run(part, strict):
                if f.status != FAIL or (f.check, f.kind, f.cgroup) in failed:
                    continue
                at = None if f.at_s is None else round(f.at_s + step.start_s, 3)
                out.append(
                    replace(f, message=f"{step.label}: {f.message}", at_s=at, step=step.label)
                )
    return out


def named(record: dict, findings: list[Finding]) -> list[Finding]:
    """Each timed finding with the step it happened in (scenarios of several steps); a
    failing one also says it first."""
    all_steps = steps(record)
    if len(all_steps) < 2:
        return findings
    out = []
    for f in findings:
        if f.at_s is not None and f.step is None:
            label = step_at(all_steps, f.at_s).label
            message = f"{label}: {f.message}" if f.status == FAIL else f.message
            f = replace(f, message=message, step=label)
        out.append(f)
    return out
