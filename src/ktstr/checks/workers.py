"""Worker lookups and labels that several checks share."""

from __future__ import annotations

from typing import Any

# Work kinds that want a CPU all the time: equal ones in a cgroup should get equal shares.
CPU_BOUND = frozenset({"spin", "cache_pressure", "mixed", "yield_heavy"})


def by_id(record: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {w["id"]: w for w in record.get("workers", [])}


def label(record: dict[str, Any], wid: int | None) -> str:
    """``worker 3 (cg_0)``: how a finding names a worker."""
    w = by_id(record).get(wid, {}) if wid is not None else {}
    return f"worker {wid} ({w.get('cgroup_path', '?')})"
