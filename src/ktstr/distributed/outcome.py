"""What a worker's failed attempt was: infrastructure (run it again) or the variant's own.

Infrastructure is what another host, or the same one later, may not repeat:
QEMU that did not start or died under the guest (QemuStartError), and a
host out of memory, whether Python's own allocation failed or the kernel's
OOM killer killed QEMU.  Anything else is the variant's (a missing kernel,
bad input, a bug in ktstr) and is said once; a verdict never reaches here.
"""

from __future__ import annotations

from pathlib import Path

from ktstr.errors import KtstrError, QemuStartError

INFRASTRUCTURE = "infrastructure"  # QEMU did not start, the worker was lost: run it elsewhere
ERROR = "error"  # the variant cannot run (missing kernel, bad input): one sentence

VMSTAT = Path("/proc/vmstat")


def oom_kills(vmstat: Path | None = None) -> int | None:
    """How many processes the host's OOM killer has killed since boot (None: unknown)."""
    try:
        for line in (vmstat or VMSTAT).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return None


def classify(err: Exception, oom_before: int | None, oom_after: int | None) -> tuple[str, str]:
    """(outcome, one sentence) for an exception that ended an attempt.

    QEMU that died while the host's OOM killer killed something was, all but surely, one
    of its victims: said so, so the record names the cause and not QEMU's exit status.
    """
    oom = oom_before is not None and oom_after is not None and oom_after > oom_before
    if isinstance(err, MemoryError):
        return INFRASTRUCTURE, "the host ran out of memory"
    if isinstance(err, QemuStartError):
        if oom:
            return INFRASTRUCTURE, f"the host ran out of memory: its OOM killer killed QEMU ({err})"
        return INFRASTRUCTURE, str(err)
    if isinstance(err, KtstrError):
        return ERROR, str(err)
    first = str(err).splitlines()[0] if str(err) else ""
    return ERROR, f"ktstr failed there ({type(err).__name__}: {first[:300]})"
