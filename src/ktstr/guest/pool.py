"""The agent's table of forked workers: pid, current cgroup, exited or not.

Ops look workers up by cgroup (``members`` of one, the ``subtree`` a
removal takes down); the reaper marks exits, and hands the scheduler's
own exit to it, and any other child's (a payload's) to ``other_exit``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ktstr.guest.sched import SchedulerProcess


class Pool:
    def __init__(self, sched: SchedulerProcess | None = None) -> None:
        self.sched = sched  # its exit is reaped here too, and reported by it
        self.pids: dict[int, int] = {}  # worker id -> pid
        self.path_of: dict[int, str] = {}  # worker id -> cgroup path (relative)
        self.exited: set[int] = set()
        # Children that are not workers (payloads): their exit status goes here.
        self.other_exit: Callable[[int, int], None] | None = None

    def add(self, pids: dict[int, int], path: str) -> None:
        """Workers just forked into cgroup ``path``."""
        for wid, pid in pids.items():
            self.pids[wid] = pid
            self.path_of[wid] = path

    def members(self, path: str) -> list[int]:
        """Live workers in exactly this cgroup, in spawn order."""
        return [w for w, p in self.path_of.items() if p == path and w not in self.exited]

    def subtree(self, path: str) -> list[int]:
        """Live workers in this cgroup or any cgroup below it."""
        return [
            w
            for w, p in self.path_of.items()
            if (p == path or p.startswith(path + "/")) and w not in self.exited
        ]

    def live(self) -> list[int]:
        return [w for w in self.pids if w not in self.exited]

    def moved(self, src: str, dst: str) -> None:
        """Every live worker of ``src`` is now in ``dst``."""
        for wid in self.members(src):
            self.path_of[wid] = dst

    def signal(self, ids: list[int], sig: int) -> None:
        """Send ``sig`` to these workers; one that is already gone is no error."""
        for wid in ids:
            try:
                os.kill(self.pids[wid], sig)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        """Collect every child that ended, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.sched and pid == self.sched.pid:
                self.sched.on_exit(status)
                continue
            wid = next((w for w, p in self.pids.items() if p == pid), None)
            if wid is not None:
                self.exited.add(wid)
            elif self.other_exit:
                self.other_exit(pid, status)

    def wait_for(self, ids: list[int], timeout_s: float, while_exiting_s: float = 0.0) -> None:
        """Reap until these workers have all exited, or ``timeout_s`` passed.

        With ``while_exiting_s``, the wait goes on past ``timeout_s`` (up to that
        much longer in all) for as long as workers keep exiting: at the end of a run
        every worker wants a CPU at once to write its result, and on an oversubscribed
        guest under emulation the last ones can wait seconds for their turn.  A worker
        kept from running while none of the others exits still ends at ``timeout_s``.
        """
        start = time.monotonic()
        end, done = start + timeout_s, len(self.exited)
        cap = start + timeout_s + while_exiting_s
        while time.monotonic() < end and not set(ids) <= self.exited:
            self.reap()
            if len(self.exited) > done:
                done = len(self.exited)
                end = min(cap, max(end, time.monotonic() + timeout_s))
            time.sleep(0.02)
