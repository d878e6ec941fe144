"""Typed errors that end in one sentence naming the cause and the fix.

The CLI catches :class:`KtstrError` and prints ``str(err)`` with no
traceback; anything else is a bug in ktstr and keeps its traceback.
"""

from __future__ import annotations


class KtstrError(Exception):
    """A failure the user can act on: ``cause`` plus an optional ``fix``."""

    exit_code = 2

    def __init__(self, cause: str, fix: str | None = None) -> None:
        self.cause = cause.rstrip(".")
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.fix:
            return f"{self.cause}; {self.fix.rstrip('.')}."
        return f"{self.cause}."


class ConfigError(KtstrError):
    """The user asked for something malformed (topology, option, path)."""


class KernelError(KtstrError):
    """The kernel is missing, unreadable or lacks what the test needs."""


class FetchError(KtstrError):
    """Downloading or verifying a package failed."""


class VmError(KtstrError):
    """QEMU could not start, or the guest did not do what it had to."""


class QemuStartError(VmError):
    """QEMU exited before the guest ran: the host's fault, not the scheduler's, so a
    distributed gauntlet may run the variant again elsewhere."""


class EnvironmentProblem(KtstrError):
    """The host lacks a tool or a resource (QEMU, busybox, disk)."""
