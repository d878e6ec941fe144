"""Disk checks: every I/O error a run saw, and (optionally) the I/O rate a scheduler allowed."""

from __future__ import annotations

from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding

_HOST_FAILED = ("failed_rd_operations", "failed_wr_operations", "failed_flush_operations")


def disk_errors(record: dict, th: dict) -> list[Finding]:
    """Fail when a disk saw more errors than allowed (0 unless the test expects errors)."""
    disks = record.get("disks") or []
    limit = th["disk_errors.max_errors"]
    out = []
    for d in disks:
        serial = d.get("serial", "?")
        if not d.get("guest"):
            out.append(
                Finding(
                    "disk_errors",
                    INCONCLUSIVE if record.get("vm_end") not in (None, "poweroff") else FAIL,
                    "disk_missing",
                    f"disk {serial} was never seen by the guest",
                )
            )
            continue
        workers = d.get("workers") or {}
        host = d.get("host") or {}
        host_failed = sum(host.get(k, 0) for k in _HOST_FAILED)
        # A device error is seen twice (QEMU fails it, the worker gets EIO); refusals
        # by the guest's block layer only by the worker: the larger count has both.
        total = max(workers.get("errors", 0), host_failed)
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(workers.get("error_kinds", {}).items()))
        where = f"{d['guest'].get('name', '?')} ({serial})"
        detail = f"{workers.get('errors', 0)} in the guest's workers" + (
            f" ({kinds})" if kinds else ""
        )
        detail += f", {host_failed} failed in QEMU" if d.get("host") else ", no QEMU counters"
        out.append(
            Finding(
                "disk_errors",
                FAIL if total > limit else PASS,
                "io_errors" if total else "ok",
                f"disk {where}: {total} I/O errors: {detail} (limit {limit:g})",
                value=float(total),
                limit=limit,
            )
        )
    return out


def io_throughput(record: dict, th: dict) -> list[Finding]:
    """Optional: I/O workers on a throttled disk reach at least this fraction of its limit.

    The device gives them the limit; falling short means the I/O-bound tasks
    waited for a CPU after their requests completed.  Off when 0.
    """
    frac = th["io_throughput.min_fraction_of_limit"]
    if not frac:
        return []
    out = []
    for d in record.get("disks") or []:
        limit = (d.get("throttle") or {}).get("iops")
        workers = d.get("workers") or {}
        if not limit or not workers.get("worker_ids"):
            continue
        got = workers.get("iops", 0.0) / limit
        out.append(
            Finding(
                "io_throughput",
                FAIL if got < frac else PASS,
                "slow_io" if got < frac else "ok",
                f"disk {d.get('serial')}: I/O workers reached {workers.get('iops', 0):.0f} of "
                f"{limit} IOPS ({got:.0%}; limit {frac:.0%})",
                value=round(got, 3),
                limit=frac,
            )
        )
    return out
