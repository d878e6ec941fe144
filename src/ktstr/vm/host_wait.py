"""How long QEMU waited for a host CPU: when the host is busy, the guest's clock runs on
while its vCPUs do not, and every timing a check judges is stretched.

The kernel keeps, per thread, the time it ran and the time it waited runnable on a run
queue (``/proc/<pid>/task/<tid>/schedstat``).  Summed over QEMU's threads, the share
of waiting says how much of the CPU the emulator wanted the host did not give it: with
nothing else running it stays small; on this 2-core host with other VMs and jobs
beside it, 0.2-0.3 was seen, and that is where verdicts on 16 vCPUs went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class HostWait:
    """The latest reading of one process's threads: seconds run and seconds waited."""

    pid: int
    proc: Path = Path("/proc")
    run_s: float | None = None
    wait_s: float | None = None

    def sample(self) -> None:
        """Read every thread's schedstat now; a process already gone keeps the last reading.

        Threads that ended before a reading are not counted: QEMU's vCPU and I/O
        threads live as long as the VM.
        """
        run = wait = 0
        try:
            tasks = list((self.proc / str(self.pid) / "task").iterdir())
        except OSError:
            return
        for task in tasks:
            try:
                fields = (task / "schedstat").read_text().split()
                run, wait = run + int(fields[0]), wait + int(fields[1])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
        self.run_s, self.wait_s = run / 1e9, wait / 1e9

    @property
    def wait_share(self) -> float | None:
        """Waited / (ran + waited), or None before a reading."""
        if self.run_s is None or self.wait_s is None or self.run_s + self.wait_s <= 0:
            return None
        return self.wait_s / (self.run_s + self.wait_s)
