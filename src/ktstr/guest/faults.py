"""Deliberate faults (the ``debug_*`` ops) and the timed actions that end them.

A fault that lasts ``ms`` leaves an undo action due at its end; the
event loop runs each when it is due, and every pending one at the end
of the run or when the run fails, so no filesystem stays frozen and no
worker stays stopped.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable

from ktstr.guest import cgroups

FIFREEZE, FITHAW = 0xC0045877, 0xC0045878  # _IOWR('X', 119/120, int)
HUNG_TASK_TIMEOUT = "/proc/sys/kernel/hung_task_timeout_secs"
SYSRQ_TRIGGER = "/proc/sysrq-trigger"


class Faults:
    def __init__(self) -> None:
        self.undo: list[tuple[float, Callable[[], None]]] = []  # (when, action): end a fault
        self.frozen = 0  # filesystems frozen now
        self.kernel_hung_timeout: str | None = None  # to restore after the last thaw

    def later(self, ms: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``ms`` (or at the end, whichever comes first)."""
        self.undo.append((time.monotonic() + ms / 1000, action))

    def run_due(self, now: float) -> None:
        """Run, in the order they were made, the undo actions due by ``now``."""
        for entry in list(self.undo):
            if now >= entry[0]:
                self.undo.remove(entry)
                entry[1]()

    def due_times(self) -> list[float]:
        return [when for when, _ in self.undo]

    def undo_all(self) -> None:
        """Run every pending undo action now; one that fails does not stop the others."""
        pending, self.undo = self.undo, []
        for _, action in pending:
            try:
                action()
            except OSError as err:
                print(f"ktstr-agent: undoing a debug fault failed: {err}", flush=True)

    def stop_process(self, pid: int, ms: float) -> None:
        """SIGSTOP a process, SIGCONT it ``ms`` later."""
        os.kill(pid, signal.SIGSTOP)
        self.later(ms, lambda: os.kill(pid, signal.SIGCONT))

    def freeze_fs(
        self, mount: str, ms: float, hung_task_timeout_s: int, on_thaw: Callable[[], None]
    ) -> None:
        """FIFREEZE the filesystem at ``mount`` until ``ms`` have passed (or the run ends).

        The hung-task timeout, when given, holds while any filesystem is
        frozen and goes back to the kernel's own value after the last thaw;
        ``on_thaw`` reports each thaw.
        """
        hung = hung_task_timeout_s
        if hung and not os.path.exists(HUNG_TASK_TIMEOUT):
            raise RuntimeError(
                "debug_freeze_fs: this kernel has no hung-task detector "
                "(CONFIG_DETECT_HUNG_TASK); drop hung_task_timeout_s or use a kernel with it"
            )
        fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FIFREEZE, 0)
        except OSError:
            os.close(fd)
            raise
        self.frozen += 1
        if hung:
            if self.kernel_hung_timeout is None:
                self.kernel_hung_timeout = cgroups.read(HUNG_TASK_TIMEOUT)
            cgroups.write(HUNG_TASK_TIMEOUT, str(hung))

        def thaw() -> None:
            fcntl.ioctl(fd, FITHAW, 0)
            os.close(fd)
            self.frozen -= 1
            if not self.frozen and self.kernel_hung_timeout is not None:
                cgroups.write(HUNG_TASK_TIMEOUT, self.kernel_hung_timeout)
                self.kernel_hung_timeout = None
            on_thaw()

        self.later(ms, thaw)


def crash_kernel() -> None:
    """Panic the guest through sysrq (the VM ends; the host classifies the crash)."""
    cgroups.write(SYSRQ_TRIGGER, "c")


def escape_cpuset(pid: int, cpu: int) -> None:
    """Move a worker out of its cgroup to the root and pin it outside its cpuset."""
    cgroups.write(f"{cgroups.CG_ROOT}/cgroup.procs", str(pid))
    os.sched_setaffinity(pid, {cpu})
