"""Can the run be judged at all?  Numbers that are not finite, a guest that never
timed its calibration loop, lines the host refused from the guest, and a VM that did
not power off cleanly each say so, instead of letting the other checks guess.

Reads: ``workers`` (every number), ``calibration.guest_loop_s``, ``channel``, ``vm_end``.
"""

from __future__ import annotations

from dataclasses import replace

from ktstr.checks import timeline as tl
from ktstr.checks.model import FAIL, INCONCLUSIVE, Finding
from ktstr.checks.workers import label

# How ktstr.vm.lifecycle names a clean power-off, and a guest that sent too much.
POWEROFF, FLOODED = "poweroff", "flooded"


def bad_numbers(record: dict) -> list[Finding]:
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
                    f"{label(record, w['id'])}: {', '.join(bad)} not a finite number; "
                    "its other facts were left unjudged",
                    w["id"],
                    w.get("cgroup_path"),
                )
            )
    return out


def uncalibrated(record: dict, th: dict) -> list[Finding]:
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


def _wait_share(record: dict) -> float | None:
    """How much of the time QEMU wanted a host CPU it waited for one, when the reading
    covers at least half the VM's life (an early reading says nothing of the run)."""
    emulator = record.get("emulator") or {}
    share = emulator.get("wait_share")
    wanted = (emulator.get("run_s") or 0) + (emulator.get("wait_s") or 0)
    life = (record.get("timings_s") or {}).get("total") or 0
    return share if tl.finite(share) and wanted >= life / 2 else None


TIMED = frozenset({"not_stuck", "fairness", "work_conservation", "imbalance"})


def busy_host_note(record: dict, th: dict, findings: list[Finding]) -> list[Finding]:
    """Timing failures of a run whose QEMU often waited for a host CPU say so: the
    guest's clock ran on while its vCPUs did not, and a rerun on a quieter host tells
    the scheduler's doing from the host's (EEVDF's false failures on 16 vCPUs came with
    waits of 15-53 %, a VM alone waits under 1 %)."""
    share = _wait_share(record)
    if share is None or share < th["emulator.note_wait_share"]:
        return findings
    note = (
        f" (QEMU waited for a host CPU {share:.0%} of the time it wanted one: a busy host "
        "stretches the guest's timing; run it again on a quieter host to tell)"
    )
    return [
        replace(f, message=f.message + note) if f.status == FAIL and f.check in TIMED else f
        for f in findings
    ]


def host_busy(record: dict, th: dict) -> list[Finding]:
    """QEMU waited for a host CPU too much of the time: the guest's clock ran on while
    its vCPUs did not, so gaps, shares and waits are the host's, not the scheduler's."""
    share, limit = _wait_share(record), th["emulator.max_wait_share"]
    if not limit or share is None or share <= limit:  # off at 0
        return []
    return [
        Finding(
            "emulator",
            INCONCLUSIVE,
            "host_busy",
            f"QEMU waited for a host CPU {share:.0%} of the time it wanted one (limit "
            f"{limit:.0%}): other load on this host stretched the guest's timings; run fewer "
            "VMs at once (-j) or on a quieter host",
            value=round(share, 3),
            limit=limit,
        )
    ]


def channel(record: dict, th: dict) -> list[Finding]:
    """A guest whose messages the host refused cannot pass: what was lost is unknown."""
    ch = record.get("channel")
    if not ch:
        return []  # a record made before the channel was accounted for
    out = []
    if ch.get("flooded"):
        out.append(Finding("channel", INCONCLUSIVE, "flooded", str(ch["flooded"])))
    bad, rejected = ch.get("bad_lines") or 0, ch.get("rejected") or 0
    if bad or rejected:
        why = "; ".join(ch.get("reasons") or [])[:500]
        out.append(
            Finding(
                "channel",
                INCONCLUSIVE,
                "refused_lines",
                f"the host refused {bad} malformed line{'s' if bad != 1 else ''} and "
                f"{rejected} invalid message{'s' if rejected != 1 else ''} from the guest"
                + (f" ({why})" if why else ""),
                value=float(bad + rejected),
                limit=0.0,
            )
        )
    return out


def vm_end(record: dict, th: dict) -> list[Finding]:
    """A VM that ended any other way than a clean power-off did not finish the scenario."""
    end = record.get("vm_end")
    if end in (None, POWEROFF, FLOODED):  # a flood is the channel check's finding
        return []
    return [Finding("vm", FAIL, end, f"the VM ended by {end} before the scenario finished")]
