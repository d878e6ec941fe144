"""Per-disk evidence for a RunRecord, from both sides of the VM boundary.

The host knows what it declared and what QEMU counted (QMP, at power-off);
the guest knows what its block layer counted (/sys/block/<dev>/stat) and
what each I/O worker did.  The record keeps all three side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ktstr.vm.drives import PreparedDisk


def _delta(start: dict[str, int], end: dict[str, int]) -> dict[str, int]:
    return {k: end[k] - start.get(k, 0) for k in end if k != "in_flight"}


def _busy_time(intervals: list[tuple[float, float]]) -> float:
    """Seconds in which at least one of the intervals was running (their union)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def _worker_totals(workers: list[dict], device: str | None) -> dict[str, Any]:
    """The I/O workers' sums on ``device``; IOPS over the time any of them ran."""
    mine = [w for w in workers if device and (w.get("io") or {}).get("device") == device]
    ops = {"read": 0, "write": 0, "flush": 0}
    errors: dict[str, int] = {}
    nbytes = {"read": 0, "write": 0}
    for w in mine:
        io = w["io"]
        for k in ops:
            ops[k] += io["ops"].get(k, 0)
        for k in nbytes:
            nbytes[k] += io["bytes"].get(k, 0)
        for k, n in io.get("error_kinds", {}).items():
            errors[k] = errors.get(k, 0) + n
    span = _busy_time([(w.get("start_s", 0.0), w.get("end_s", 0.0)) for w in mine])
    data_ops = ops["read"] + ops["write"]
    return {
        "worker_ids": [w["id"] for w in mine],
        "ops": ops,
        "bytes": nbytes,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "iops": round(data_ops / span, 1) if span > 0 else 0.0,
        "bytes_per_s": round((nbytes["read"] + nbytes["write"]) / span) if span > 0 else 0,
    }


def disk_records(
    prepared: Sequence[PreparedDisk],
    seen: list[dict],
    final: list[dict],
    blockstats: dict[str, dict[str, int]] | None,
    workers: list[dict],
) -> list[dict[str, Any]]:
    """One entry per declared disk: declaration, guest view, guest and QEMU counters."""
    seen_by_serial = {d["serial"]: d for d in seen}
    final_by_serial = {d["serial"]: d for d in final}
    out = []
    for p in prepared:
        guest = dict(seen_by_serial.get(p.serial) or {})
        end = (final_by_serial.get(p.serial) or {}).get("stat_end")
        if guest and end:
            guest["stat_end"] = end
            guest["stat_delta"] = _delta(guest.get("stat_start", {}), end)
        entry = p.as_record()
        entry["guest"] = guest or None
        entry["host"] = (blockstats or {}).get(p.drive_id)
        entry["workers"] = _worker_totals(workers, guest.get("device"))
        out.append(entry)
    return out
