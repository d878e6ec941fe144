"""The one place that owns a VM's lifetime: start, stream, time out, kill, classify.

QEMU's stdout is the guest console (ttyS0), copied line by line to
``console.log``; the virtio-serial channel arrives on one end of a
socketpair and is copied to ``channel.jsonl`` as it comes.  QEMU gets
PR_SET_PDEATHSIG so it cannot outlive us, even if we are SIGKILLed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktstr import wire
from ktstr.vm.qemu import VmConfig, build_argv
from ktstr.vm.qmp import Monitor

log = logging.getLogger(__name__)

PANIC_MARKERS = ("Kernel panic - not syncing", "kernel BUG at")
POWER_DOWN_MARKER = b"reboot: Power down"  # the kernel's last words on a power-off
# How the VM ended.
POWEROFF, PANIC, TIMEOUT, QEMU_FAILED, INTERRUPTED = (
    "poweroff",
    "panic",
    "timeout",
    "qemu_failed",
    "interrupted",
)
_PR_SET_PDEATHSIG = 1
_KILL_GRACE_S = 3.0
_ABORT_POLL_S = 0.25
# Set to stop every VM of this process at once (a gauntlet's Ctrl-C): each run_vm
# kills its QEMU and raises KeyboardInterrupt in its own thread.
ABORT = threading.Event()


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class VmResult:
    end: str  # one of POWEROFF, PANIC, TIMEOUT, QEMU_FAILED, INTERRUPTED
    exit_code: int | None
    run_dir: Path
    messages: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)
    panic_line: str | None = None
    stderr_tail: str = ""
    started: float = 0.0  # host monotonic at QEMU start
    first_message_s: float | None = None  # seconds after start
    exited_s: float = 0.0
    blockstats: dict[str, dict[str, int]] | None = None  # per drive id, at power-off (QMP)

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["kind"] == kind), None)

    @property
    def console_path(self) -> Path:
        return self.run_dir / "console.log"


class _Console(threading.Thread):
    """Copies the console to a file; remembers the first panic line and a power-off."""

    def __init__(self, stream, path: Path) -> None:
        super().__init__(daemon=True, name="ktstr-console")
        self.stream, self.path = stream, path
        self.panic_line: str | None = None
        self.saw_output = False
        self.powered_down = False

    def run(self) -> None:
        with open(self.path, "wb") as out:
            for raw in iter(self.stream.readline, b""):
                out.write(raw)
                out.flush()
                self.saw_output = True
                if POWER_DOWN_MARKER in raw:
                    self.powered_down = True
                if self.panic_line is None:
                    text = raw.decode(errors="replace")
                    if any(m in text for m in PANIC_MARKERS):
                        self.panic_line = text.strip()


class _Channel(threading.Thread):
    """Copies channel lines to ``channel.jsonl`` and decodes them as they arrive."""

    def __init__(
        self,
        sock: socket.socket,
        path: Path,
        started: float,
        on_message: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        super().__init__(daemon=True, name="ktstr-channel")
        self.sock, self.path, self.started = sock, path, started
        self.on_message = on_message
        self.messages: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self.first_at: float | None = None
        self.done_at: float | None = None  # host monotonic time of the agent's DONE

    def run(self) -> None:
        with open(self.path, "wb") as out, self.sock.makefile("rb") as stream:
            for raw in stream:
                now = time.monotonic()
                out.write(raw)
                out.flush()
                try:
                    msg = wire.decode(raw)
                except wire.WireError as err:
                    self.bad_lines.append(f"{err}: {raw[:200]!r}")
                    continue
                msg["host_s"] = round(now - self.started, 6)
                if self.first_at is None:
                    self.first_at = now - self.started
                self.messages.append(msg)
                if msg["kind"] == wire.DONE:
                    self.done_at = now
                if self.on_message:
                    self.on_message(msg)


def _wait(
    proc: subprocess.Popen, timeout_s: float, finished: Callable[[], bool] = lambda: False
) -> bool:
    """Wait for QEMU to exit (or ``finished()`` to say it is done); False on timeout.

    A pidfd wakes us the moment QEMU exits (Popen.wait polls every 50 ms).
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([pidfd], [], [], min(left, _ABORT_POLL_S))
            if ready:
                proc.wait()
                return True
            if ABORT.is_set():
                raise KeyboardInterrupt
            if finished():
                return True
    finally:
        os.close(pidfd)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_vm(
    cfg: VmConfig,
    run_dir: Path,
    timeout_s: float,
    on_message: Callable[[dict[str, Any]], None] | None = None,
) -> VmResult:
    """Boot, stream, and wait for the VM to end; never leaves QEMU running."""
    host_end, guest_end = socket.socketpair()
    cfg.channel_fd = guest_end.fileno()
    qmp_host = qmp_guest = None
    if cfg.drive_args:  # disks: QMP reads their counters when the guest powers off
        qmp_host, qmp_guest = socket.socketpair()
        cfg.monitor_fd = qmp_guest.fileno()
    argv = build_argv(cfg)
    (run_dir / "qemu.argv").write_text("\n".join(argv) + "\n")
    stderr_path = run_dir / "qemu.stderr.log"
    started = time.monotonic()
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            argv,
            stdin=None if cfg.interactive else subprocess.DEVNULL,
            stdout=None if cfg.interactive else subprocess.PIPE,
            stderr=stderr,
            pass_fds=[guest_end.fileno()] + ([qmp_guest.fileno()] if qmp_guest else []),
            preexec_fn=_die_with_parent,
            start_new_session=not cfg.interactive,
        )
    guest_end.close()
    monitor = None
    if qmp_host and qmp_guest:
        qmp_guest.close()
        monitor = Monitor(qmp_host)
        monitor.start()
    console = None
    if not cfg.interactive:
        console = _Console(proc.stdout, run_dir / "console.log")
        console.start()
    channel = _Channel(host_end, run_dir / "channel.jsonl", started, on_message)
    channel.start()
    end = None

    def paused_for_good() -> bool:
        """The guest finished and powered off, but no monitor is left to end the paused QEMU."""
        return bool(
            monitor
            and monitor.abandoned
            and channel.done_at
            and (console is None or console.powered_down)
            and time.monotonic() - channel.done_at > _KILL_GRACE_S
        )

    try:
        if not _wait(proc, timeout_s, paused_for_good):
            end = TIMEOUT
        elif proc.poll() is None:
            end = POWEROFF
    except KeyboardInterrupt:
        end = INTERRUPTED
        raise
    finally:
        _stop(proc)
        exited = time.monotonic() - started
        if console:
            console.join(5)
        channel.join(5)
        host_end.close()
        if monitor:
            monitor.join(5)
            qmp_host.close()
    stderr_tail = stderr_path.read_text(errors="replace")[-2000:]
    panic_line = console.panic_line if console else None
    guest_panic = monitor is not None and monitor.shutdown_reason == "guest-panic"
    if end is None or end == POWEROFF and (panic_line or guest_panic):
        if panic_line or guest_panic or proc.returncode == 1 and console and console.saw_output:
            end = PANIC
        elif proc.returncode == 0:
            end = POWEROFF
        else:
            end = QEMU_FAILED
    log.debug("VM ended: %s (exit %s) after %.2f s", end, proc.returncode, exited)
    return VmResult(
        end=end,
        exit_code=proc.returncode,
        run_dir=run_dir,
        messages=channel.messages,
        bad_lines=channel.bad_lines,
        panic_line=panic_line,
        stderr_tail=stderr_tail,
        started=started,
        first_message_s=channel.first_at,
        exited_s=exited,
        blockstats=monitor.blockstats if monitor else None,
    )
