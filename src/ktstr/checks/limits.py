"""Optional per-worker limits, off unless a threshold is set: migrations per unit of
work, p99 wake latency, work rate.

Reads: ``workers[].units, migrations, wake.p99_us, start_s, end_s``.
"""

from __future__ import annotations

from ktstr.checks.model import FAIL, Finding
from ktstr.checks.workers import label


def worker_limits(record: dict, th: dict) -> list[Finding]:
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
                    f"{label(record, wid)}: {w['migrations'] / units:.3f} migrations "
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
                    f"{label(record, wid)}: p99 wake latency {wake['p99_us']:.0f} us "
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
                    f"{label(record, wid)}: {units / wall:.1f} units/s (limit {rate})",
                    wid,
                    value=units / wall,
                    limit=rate,
                )
            )
    return out
