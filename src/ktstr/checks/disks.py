"""disk_errors: every I/O error a run saw, from the workers, the guest and QEMU."""

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
