"""Disk checks: every I/O error a run saw, and (optionally) the I/O rate a scheduler allowed."""

from __future__ import annotations

from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding

_HOST_FAILED = ("failed_rd_operations", "failed_wr_operations", "failed_flush_operations")


def host_failed(host: dict) -> int:
    """Requests QEMU failed on a disk (reads, writes, flushes)."""
    return sum(host.get(k, 0) for k in _HOST_FAILED)


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
        host = d.get("host")
        if host is None:
            out.append(
                Finding(
                    "disk_errors",
                    INCONCLUSIVE,
                    "no_host_counters",
                    f"disk {serial}: QEMU's counters were not read (the monitor was lost), "
                    "so device errors cannot be ruled out",
                )
            )
        failed = host_failed(host or {})
        kinds = workers.get("error_kinds", {})
        # A device error is counted by QEMU and seen again by the worker as EIO: count it
        # once.  Refusals by the guest's own block layer (ENOSPC, EPERM, short transfers)
        # never reach QEMU, and QEMU's failures on filesystem I/O reach no worker.
        total = failed + sum(n for k, n in kinds.items() if k != "EIO")
        if not host:
            total += kinds.get("EIO", 0)
        listed = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
        where = f"{d['guest'].get('name', '?')} ({serial})"
        detail = f"{workers.get('errors', 0)} in the guest's workers" + (
            f" ({listed})" if listed else ""
        )
        detail += f", {failed} failed in QEMU" if host else ", no QEMU counters"
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
    """Optional: I/O workers on an IOPS-limited disk reach at least this fraction of it.

    The device serves requests at the limit while they keep it busy; falling
    short usually means they waited for a CPU after their requests completed.
    A disk that also has a bandwidth limit is left out (that limit may bind
    first).  Off when 0.
    """
    frac = th["io_throughput.min_fraction_of_limit"]
    if not frac:
        return []
    out = []
    for d in record.get("disks") or []:
        limit = (d.get("throttle") or {}).get("iops")
        workers = d.get("workers") or {}
        if not limit or (d.get("throttle") or {}).get("bps") or not workers.get("worker_ids"):
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
