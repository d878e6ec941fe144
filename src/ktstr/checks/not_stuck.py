"""not_stuck: every worker made progress, and no gap between its progress stamps was
longer than the limit, outside windows where the scenario froze its cgroup on purpose.
The time from a worker's release (the start gate, or its spawn in a later step) to its
first stamp counts as a gap too: a scheduler that starves a worker from the start must
not pass because the worker never stamped.

Reads: ``workers[].units, gaps, end_s, error``, ``events`` (freeze/unfreeze, stops),
``duration_s``.
"""

from __future__ import annotations

from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding
from ktstr.checks.workers import label


def not_stuck(record: dict, th: dict) -> list[Finding]:
    limit_ms = th["not_stuck.max_gap_ms"]
    workers = record.get("workers", [])
    if not workers:
        return [Finding("not_stuck", INCONCLUSIVE, "no_workers", "the run recorded no workers")]
    duration = record.get("duration_s", 0.0)
    frozen = tl.windows(record, "freeze", "unfreeze", duration)
    stopped = tl.stopped_at(record)
    released = tl.released_at(record)
    out, worst = [], 0.0
    for w in workers:
        wid, path = w["id"], w.get("cgroup_path", "?")
        if w.get("error"):
            out.append(
                Finding(
                    "not_stuck",
                    FAIL,
                    "worker_error",
                    f"{label(record, wid)} failed: {w['error']}",
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
                    f"{label(record, wid)} made no progress",
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
        begun = released.get(wid)
        if begun is not None and tl.finite(w.get("start_s")) and w["start_s"] > begun:
            gaps.append([w["start_s"] - begun, begun, None])  # released, but not yet running
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
                        f"{label(record, wid)} stuck {gap * 1000:.0f} ms{where} at +{at:.1f} s "
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
