"""The scheduler under test inside the guest: start, watch, stop.

It streams what matters as it happens: the scheduler's own output, the
kernel log from the moment it starts, sched_ext state changes and the
process's exit, so the host can name the failure and its evidence.
"""

from __future__ import annotations

import os
import re
import signal
import time

from ktstr import wire
from ktstr.guest import topo, verifier
from ktstr.guest.channel import Channel

SCX = "/sys/kernel/sched_ext"
STOP_WAIT_S = 5.0
PF_KTHREAD = 0x00200000
# The task the sched_ext watchdog names when it ejects a scheduler for a stall.
_STALLED_TASK = re.compile(r"\[(\d+)\] failed to run for")


def _read(path: str) -> str:
    return topo.read(path) or ""


def parse_events(text: str) -> dict[str, int]:
    """``root/events`` lines (``SCX_EV_SELECT_CPU_FALLBACK  3``) -> name: count.

    Lines without a name and an integer count are skipped.
    """
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.strip() and value.strip().lstrip("-").isdigit():
            out[name.strip()] = int(value)
    return out


def events() -> dict[str, int]:
    """The root scheduler's event counters (``root/events``), where the kernel has them."""
    return parse_events(_read(f"{SCX}/root/events"))


def parse_kmsg(record: str) -> tuple[int, int, str]:
    """One ``/dev/kmsg`` record -> (level, usec, first line of the text).

    A record is ``prefix,seq,usec,flags[,...];text`` and may carry
    continuation lines (`` KEY=value``) after the text; the prefix holds the
    facility in its high bits and the level in its low three.
    """
    head, _, text = record.partition(";")
    fields = head.split(",")
    return int(fields[0]) & 7, int(fields[2]), text.split("\n", 1)[0]


def is_kthread(pid: int) -> bool | None:
    """Whether ``pid`` is a kernel thread (PF_KTHREAD in /proc/<pid>/stat), or None when
    it is gone: the host then tells kernel threads by name."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return bool(int(stat.rpartition(")")[2].split()[6]) & PF_KTHREAD)  # field 9: flags
    except (OSError, ValueError, IndexError):
        return None


def stalled_task_kthread(text: str) -> dict[str, bool]:
    """For a stall line, ``{"task_kthread": ...}`` about the task it names; else {}."""
    match = _STALLED_TASK.search(text)
    kthread = is_kthread(int(match.group(1))) if match else None
    return {} if kthread is None else {"task_kthread": kthread}


def sched_ext_state() -> tuple[str, str]:
    return _read(f"{SCX}/state"), _read(f"{SCX}/root/ops")


class SchedulerProcess:
    def __init__(self, channel: Channel, spec: dict) -> None:
        self.channel, self.spec = channel, spec
        self.pid = 0
        self.exit: dict | None = None
        self.out_fd = -1
        self.kmsg_fd = -1
        self.partial = b""
        self.state = ("", "")
        self.t0 = time.monotonic()

    def send(self, event: str, **extra: object) -> None:
        self.channel.send(
            wire.SCHED, event=event, at_s=round(time.monotonic() - self.t0, 6), **extra
        )

    def fds(self) -> list[int]:
        return [fd for fd in (self.out_fd, self.kmsg_fd) if fd >= 0]

    def start(self, t0: float) -> bool:
        """Start the scheduler and wait, bounded, until sched_ext runs it."""
        self.t0 = t0
        for key, value in self.spec.get("sysctls", {}).items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        self.kmsg_fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.kmsg_fd, 0, os.SEEK_END)  # only what happens from now on
        read_fd, write_fd = os.pipe()
        argv = [self.spec["path"], *self.spec["args"]]
        env = {"PATH": "/bin:/sbin", "LD_LIBRARY_PATH": self.spec.get("ld_library_path", "")}
        vstats = self.spec.get("verifier")
        if vstats:  # ktstr verifier: the loader runs under the statistics library
            os.makedirs(vstats["dir"], exist_ok=True)
            env.update(LD_PRELOAD=vstats["preload"], KTSTR_VSTATS_DIR=vstats["dir"])
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.dup2(write_fd, 1)
                os.dup2(write_fd, 2)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.out_fd = read_fd
        self.send("started", pid=self.pid, argv=argv)
        deadline = time.monotonic() + self.spec.get("attach_timeout_s", 30)
        while time.monotonic() < deadline:
            self.poll()
            if self.state == ("enabled", self.spec["ops"]):
                self.send("attached", ops=self.state[1], events=events())
                self.report_verifier()
                return True
            if self.exit is not None:
                break
            time.sleep(0.01)
        self.poll()
        self.send(
            "attach_failed",
            state=self.state[0],
            ops=self.state[1],
            exited=self.exit is not None,
            timeout_s=self.spec.get("attach_timeout_s", 30),
        )
        self.report_verifier()
        return False

    def report_verifier(self) -> None:
        """Under ``ktstr verifier``: what the verifier said about each program loaded."""
        vstats = self.spec.get("verifier")
        if vstats:
            verifier.report(self.channel, vstats["dir"], self.pid if self.exit is None else 0)

    def on_exit(self, status: int) -> None:
        """Record how the scheduler process ended (the reaper passes its wait status)."""
        if os.WIFSIGNALED(status):
            self.exit = {"signal": os.WTERMSIG(status), "core": os.WCOREDUMP(status)}
        else:
            self.exit = {"code": os.WEXITSTATUS(status)}
        self.drain()
        self.send("exited", **self.exit)

    def drain(self) -> None:
        while self.out_fd >= 0:
            try:
                chunk = os.read(self.out_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                os.close(self.out_fd)
                self.out_fd = -1
                break
            data = self.partial + chunk
            *lines, self.partial = data.split(b"\n")
            for line in lines:
                self.channel.send(
                    wire.SCHED_OUTPUT,
                    line=line.decode(errors="replace"),
                    at_s=round(time.monotonic() - self.t0, 6),
                )
        if self.partial:
            self.channel.send(
                wire.SCHED_OUTPUT,
                line=self.partial.decode(errors="replace"),
                at_s=round(time.monotonic() - self.t0, 6),
            )
            self.partial = b""

    def read_kmsg(self) -> None:
        while self.kmsg_fd >= 0:
            try:
                record = os.read(self.kmsg_fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return
            except OSError:  # EPIPE: records were overwritten; carry on
                continue
            level, usec, text = parse_kmsg(record)
            self.channel.send(
                wire.KMSG,
                text=text,
                level=level,
                usec=usec,
                mono=round(time.monotonic(), 6),  # read time, same clock base as usec
                at_s=round(time.monotonic() - self.t0, 6),
                **stalled_task_kthread(text),
            )

    def poll(self) -> None:
        self.drain()
        self.read_kmsg()
        if self.exit is None and self.pid:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.on_exit(status)
        state = sched_ext_state()
        if state != self.state:
            self.state = state
            self.send(
                "state",
                state=state[0],
                ops=state[1],
                enable_seq=_read(f"{SCX}/enable_seq"),
                nr_rejected=_read(f"{SCX}/nr_rejected"),
            )

    def stop(self) -> None:
        """SIGINT, then wait for a clean unregistration; SIGKILL if it hangs."""
        self.send("stopping", events=events() if self.state[0] == "enabled" else {})
        if self.exit is None and self.pid:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + STOP_WAIT_S
            while self.exit is None and time.monotonic() < deadline:
                self.poll()
                time.sleep(0.02)
            if self.exit is None:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.on_exit(status)
                self.send("killed")
        time.sleep(0.05)
        self.poll()
        self.send("stopped", state=self.state[0])
