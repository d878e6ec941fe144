"""The one place that owns a VM's lifetime: start, stream, time out, kill, classify.

QEMU's stdout is the guest console (ttyS0), copied line by line to
``console.log``; the virtio-serial channel arrives on one end of a
socketpair and is copied to ``channel.jsonl`` as it comes.  QEMU gets
PR_SET_PDEATHSIG so it cannot outlive us, even if we are SIGKILLed.

Both streams come from an untrusted guest, so both are read under caps
(see ``StreamLimits``): a line over the line cap is counted and skipped,
never held whole; a stream over its total cap ends the VM as FLOODED.
Every channel message is validated (``guest_messages``) before it joins
``VmResult.messages``.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktstr import wire
from ktstr.text import escape_bytes
from ktstr.vm import guest_messages
from ktstr.vm.host_wait import HostWait
from ktstr.vm.qemu import VmConfig, build_argv, qemu_for
from ktstr.vm.qmp import Monitor

log = logging.getLogger(__name__)

PANIC_MARKERS = ("Kernel panic - not syncing", "kernel BUG at")
POWER_DOWN_MARKER = b"reboot: Power down"  # the kernel's last words on a power-off
# How the VM ended.
POWEROFF, PANIC, TIMEOUT, QEMU_FAILED, INTERRUPTED, FLOODED = (
    "poweroff",
    "panic",
    "timeout",
    "qemu_failed",
    "interrupted",
    "flooded",  # the guest sent more than a stream's total cap: stopped, data cut short
)
_KILL_GRACE_S = 3.0
CHANNEL_DRAIN_S = 120.0  # at most this long to read and validate what QEMU left in the channel
_ABORT_POLL_S = 0.25
# Set to stop every VM of this process at once (a gauntlet's Ctrl-C): each run_vm
# kills its QEMU and raises KeyboardInterrupt in its own thread.
ABORT = threading.Event()


MiB = 1 << 20
SAMPLES_KEPT = 20  # bad lines and rejected messages: the first few, each bounded
_SAMPLE_CHARS = 200
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class StreamLimits:
    """Caps on what the guest may send; over a line cap a line is skipped, over a total the VM
    ends.

    Sizes, from what a legitimate run sends: a ``sample`` holds util, steal
    and schedstat per CPU, about 60 bytes each, so 15 KB at 252 vCPUs, two
    per second (30 KB/s); a scheduler's stats line or a kernel record is a
    few hundred bytes.  A worker result is its largest line: up to 20 000
    residency moves (~0.5 MB) plus ten progress points a second (~280 B/s).
    The channel may therefore send 64 MiB, plus 64 KiB for each second the
    VM may live (twice the sample rate of the largest topology, for the
    whole timeout, which itself is more than twice the duration), plus
    1 MiB and 512 B/s per planned worker; a line may be 8 MiB (a worker
    result of a seven-hour run).  The console carries the kernel log at
    loglevel 5 and the agent's own lines, a few hundred lines a run: 32 MiB
    holds a warning storm of thousands of splats, and a line may be 64 KiB
    (the kernel's records are at most 1 KiB).
    """

    channel_line: int = 8 * MiB
    channel_total: int = 64 * MiB
    console_line: int = 64 * 1024
    console_total: int = 32 * MiB

    @classmethod
    def for_run(cls, timeout_s: float, workers: int = 0) -> StreamLimits:
        """The caps for a VM that may live ``timeout_s`` and runs ``workers`` workers."""
        per_second = 64 * 1024 + 512 * workers
        return cls(channel_total=int(64 * MiB + per_second * timeout_s + MiB * workers))


class _Lines:
    """Splits a byte stream into lines under a line cap and a total cap.

    Holds at most one line of at most ``max_line`` bytes: a longer line is
    reported as its first ``max_line`` bytes plus the count of the bytes
    skipped up to its newline.  Past ``max_total`` bytes it stops reading
    and sets ``flooded``.
    """

    def __init__(self, read: Callable[[int], bytes], max_line: int, max_total: int) -> None:
        self.read, self.max_line, self.max_total = read, max_line, max_total
        self.total = 0
        self.flooded = False

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        """(line with its newline, 0), or (first bytes of an over-long line, bytes skipped)."""
        buf = bytearray()
        skipped = -1  # >= 0 while skipping the rest of an over-long line
        while True:
            try:
                chunk = self.read(_READ_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            room = self.max_total - self.total
            self.total += len(chunk)
            if len(chunk) > room:
                chunk = chunk[:room]
                self.flooded = True
            start = 0
            while start < len(chunk):
                nl = chunk.find(b"\n", start)
                end = len(chunk) if nl < 0 else nl + 1
                newline = nl >= 0  # the newline itself is neither kept nor counted as skipped
                if skipped >= 0:
                    skipped += end - start - newline
                else:
                    buf += chunk[start:end]
                    if len(buf) - newline > self.max_line:
                        skipped = len(buf) - newline - self.max_line
                        del buf[self.max_line :]
                if nl >= 0:
                    yield bytes(buf), max(skipped, 0)
                    buf.clear()
                    skipped = -1
                start = end
            if self.flooded:
                return
        if buf or skipped >= 0:
            yield bytes(buf), max(skipped, 0)


class _Samples:
    """An exact count and the first few examples."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.first) < SAMPLES_KEPT:
            self.first.append(text)


def guarded_argv(argv: list[str]) -> list[str]:
    """``argv`` run so that it is SIGKILLed when this process dies, even by SIGKILL.

    PR_SET_PDEATHSIG must be set in the child between fork and exec;
    Popen's ``preexec_fn`` can do that but is not safe in a threaded
    process (a gauntlet runs VMs from threads).  Instead the child execs a
    small program that sets it and execs QEMU: ``setpriv --pdeathsig KILL``
    from util-linux, else this Python with ctypes.  The death signal
    survives exec (QEMU is not set-user-ID).  If we died before it was set,
    the child's parent is no longer us: ``sh`` (or the Python wrapper)
    checks that and exits, so no QEMU is ever left behind.  The signal
    follows the thread that started the child, and run_vm keeps that
    thread until QEMU is gone.
    """
    me = str(os.getpid())
    setpriv = shutil.which("setpriv")
    if setpriv:
        check = 'test "$PPID" = "$0" || exit 125; exec "$@"'
        return [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", check, me, *argv]
    return [sys.executable, "-I", "-S", "-c", _PY_GUARD, me, *argv]


_PY_GUARD = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(125)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def tail_lines(path: Path, max_lines: int, max_bytes: int) -> list[str]:
    """The last ``max_lines`` lines of a guest-written file, reading at most ``max_bytes``.

    Reads from the end, so a huge file costs no more than ``max_bytes``; a
    first line cut by the window is dropped.  Lines are split on newlines
    only (a guest's form feeds or separators do not make lines), a
    trailing carriage return is removed, invalid UTF-8 becomes U+FFFD.
    The text is raw: escape it (``ktstr.text.escape``) before printing.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # cut by the window
    if lines and not lines[-1]:
        lines.pop()  # the file ended with a newline
    tail = lines[-max_lines:] if max_lines > 0 else []
    return [ln.removesuffix(b"\r").decode("utf-8", errors="replace") for ln in tail]


@dataclass
class VmResult:
    end: str  # one of POWEROFF, PANIC, TIMEOUT, QEMU_FAILED, INTERRUPTED, FLOODED
    exit_code: int | None
    run_dir: Path
    messages: list[dict[str, Any]] = field(default_factory=list)  # decoded and validated
    bad_lines: list[str] = field(default_factory=list)  # the first SAMPLES_KEPT, escaped
    panic_line: str | None = None  # raw console text: escape it to print
    stderr_tail: str = ""
    started: float = 0.0  # host monotonic at QEMU start
    first_message_s: float | None = None  # seconds after start
    exited_s: float = 0.0
    blockstats: dict[str, dict[str, int]] | None = None  # per drive id, at power-off (QMP)
    bad_line_count: int = 0  # channel lines that were no message: over-long, not JSON, ...
    rejected_count: int = 0  # decoded messages that failed guest_messages.validate
    rejected: list[str] = field(default_factory=list)  # the first SAMPLES_KEPT reasons
    flooded: str | None = None  # with end == FLOODED: which stream, and its cap
    channel_bytes: int = 0  # bytes read from each stream
    console_bytes: int = 0
    console_long_lines: int = 0  # console lines cut at the console line cap
    host_wait: HostWait | None = None  # how long QEMU waited for a host CPU

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["kind"] == kind), None)

    @property
    def console_path(self) -> Path:
        return self.run_dir / "console.log"

    def channel_problems(self) -> str | None:
        """One line on what the channel delivered that the host could not use, or None."""
        parts = []
        if self.bad_line_count:
            first = f" (first: {self.bad_lines[0]})" if self.bad_lines else ""
            parts.append(f"{self.bad_line_count} malformed channel lines{first}")
        if self.rejected_count:
            first = f" (first: {self.rejected[0]})" if self.rejected else ""
            parts.append(f"{self.rejected_count} guest messages rejected{first}")
        return "; ".join(parts) or None


class _Console(threading.Thread):
    """Copies the console to a file under caps; remembers the first panic line and a power-off.

    A line over the line cap is written cut, with a note of what was left out.
    """

    def __init__(self, stream, path: Path, limits: StreamLimits, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="ktstr-console")
        self.stream, self.path, self.stop = stream, path, stop
        self.lines = _Lines(stream.read1, limits.console_line, limits.console_total)
        self.panic_line: str | None = None
        self.saw_output = False
        self.powered_down = False
        self.long_lines = 0

    def run(self) -> None:
        try:
            with open(self.path, "wb") as out:
                for raw, skipped in self.lines:
                    self.saw_output = True
                    if skipped:
                        self.long_lines += 1
                        raw += f" [ktstr: line cut here, {skipped} more bytes]\n".encode()
                    out.write(raw)
                    out.flush()
                    if POWER_DOWN_MARKER in raw:
                        self.powered_down = True
                    if self.panic_line is None:
                        text = raw.decode(errors="replace")
                        if any(m in text for m in PANIC_MARKERS):
                            self.panic_line = text.strip()[:1000]
        except Exception:  # noqa: BLE001 - a host bug or a full disk: say so, stop reading
            log.exception("reading the guest console failed")
        finally:
            if self.lines.flooded:
                self.stream.close()  # QEMU's writes now fail at once instead of blocking
                self.stop.set()

    @property
    def flooded(self) -> str | None:
        if not self.lines.flooded:
            return None
        cap = self.lines.max_total
        return f"the guest flooded the console: more than {cap} bytes ({cap / MiB:g} MiB cap)"


class _Channel(threading.Thread):
    """Copies channel lines to ``channel.jsonl``, decodes and validates them as they arrive.

    Whatever a line holds, the thread goes on: a line that is no message is
    counted in ``bad`` and one that fails validation in ``rejected``, each
    with the first few examples; neither joins ``messages``.
    """

    def __init__(
        self,
        sock: socket.socket,
        path: Path,
        started: float,
        on_message: Callable[[dict[str, Any]], None] | None,
        limits: StreamLimits | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(daemon=True, name="ktstr-channel")
        self.sock, self.path, self.started = sock, path, started
        self.on_message = on_message
        self.stop = stop or threading.Event()
        limits = limits or StreamLimits()
        self.lines = _Lines(sock.recv, limits.channel_line, limits.channel_total)
        self.messages: list[dict[str, Any]] = []
        self.bad = _Samples()
        self.rejected = _Samples()
        self.first_at: float | None = None
        self.done_at: float | None = None  # host monotonic time of the agent's DONE

    @property
    def bad_lines(self) -> list[str]:
        return self.bad.first

    @property
    def flooded(self) -> str | None:
        if not self.lines.flooded:
            return None
        cap = self.lines.max_total
        return f"the guest flooded the channel: more than {cap} bytes ({cap / MiB:g} MiB cap)"

    def run(self) -> None:
        try:
            with open(self.path, "wb") as out:
                for raw, skipped in self.lines:
                    try:
                        self.line(raw, skipped, out)
                    except Exception as err:  # noqa: BLE001 - never let one line end the thread
                        log.exception("handling a guest channel line failed")
                        self.bad.add(
                            f"host error {type(err).__name__}: {escape_bytes(raw, limit=80)}"
                        )
        except Exception:  # noqa: BLE001 - e.g. the file cannot be written: stop, loudly
            log.exception("reading the guest channel failed")
        finally:
            if self.lines.flooded:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)  # QEMU's writes fail, not block
                except OSError:
                    pass
                self.stop.set()

    def line(self, raw: bytes, skipped: int, out) -> None:
        now = time.monotonic()
        if skipped:
            self.bad.add(
                f"line over {self.lines.max_line} bytes ({skipped} more skipped): "
                + escape_bytes(raw, limit=_SAMPLE_CHARS)
            )
            return
        out.write(raw)
        out.flush()
        try:
            msg = wire.decode(raw)
        except wire.WireError as err:
            self.bad.add(f"{err}: {escape_bytes(raw, limit=_SAMPLE_CHARS)}")
            return
        reason = guest_messages.validate(msg)
        if reason:
            self.rejected.add(reason)
            return
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
    limits: StreamLimits | None = None,
    on_qmp: Callable[[Monitor], None] | None = None,
) -> VmResult:
    """Boot, stream, and wait for the VM to end; never leaves QEMU running.

    ``on_qmp`` gets the VM's QMP monitor once QEMU runs (the host-side
    monitor pauses the VM through it); asking for it gives every VM one.

    ``limits`` defaults to ``StreamLimits.for_run(timeout_s)``.  A guest
    that sends more than a stream's total cap is stopped at once: the
    result's ``end`` is FLOODED and ``flooded`` says which stream.
    """
    limits = limits or StreamLimits.for_run(timeout_s)
    host_end, guest_end = socket.socketpair()
    cfg.channel_fd = guest_end.fileno()
    qmp_host = qmp_guest = None
    if cfg.drive_args or on_qmp:  # disks: QMP reads their counters at power-off
        qmp_host, qmp_guest = socket.socketpair()
        cfg.monitor_fd = qmp_guest.fileno()
    argv = build_argv(cfg)
    (run_dir / "qemu.argv").write_text("\n".join(argv) + "\n")
    stderr_path = run_dir / "qemu.stderr.log"
    started = time.monotonic()
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            guarded_argv(argv),
            stdin=None if cfg.interactive else subprocess.DEVNULL,
            stdout=None if cfg.interactive else subprocess.PIPE,
            stderr=stderr,
            pass_fds=[guest_end.fileno()] + ([qmp_guest.fileno()] if qmp_guest else []),
            start_new_session=not cfg.interactive,
            env=qemu_for(cfg).env(),
        )
    guest_end.close()
    host_wait = HostWait(proc.pid)
    monitor = None
    if qmp_host and qmp_guest:
        qmp_guest.close()
        monitor = Monitor(qmp_host)
        monitor.start()
        if on_qmp:
            on_qmp(monitor)
    flood = threading.Event()  # set by a reader that stopped at its total cap
    console = None
    if not cfg.interactive:
        console = _Console(proc.stdout, run_dir / "console.log", limits, flood)
        console.start()
    channel = _Channel(host_end, run_dir / "channel.jsonl", started, on_message, limits, flood)
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

    def finished() -> bool:
        host_wait.sample()  # every poll: QEMU's threads are gone once it is reaped
        return flood.is_set() or paused_for_good()

    try:
        if not _wait(proc, timeout_s, finished):
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
        # QEMU is gone, so the channel is at its end: wait for every line to be read and
        # validated, or the record would silently miss the last ones.
        channel.join(CHANNEL_DRAIN_S)
        host_end.close()
        if monitor:
            monitor.join(5)
            qmp_host.close()
    stderr_tail = "\n".join(tail_lines(stderr_path, 40, 2000))
    panic_line = console.panic_line if console else None
    guest_panic = monitor is not None and monitor.shutdown_reason == "guest-panic"
    flooded = channel.flooded or (console.flooded if console else None)
    if channel.is_alive():
        channel.rejected.add(
            f"the channel was still being read {CHANNEL_DRAIN_S:.0f} s after QEMU ended"
        )
    if flooded:  # whatever else happened, what the guest said was cut short
        end = FLOODED
    elif end is None or end == POWEROFF and (panic_line or guest_panic):
        if panic_line or guest_panic or proc.returncode == 1 and console and console.saw_output:
            end = PANIC
        elif proc.returncode == 0:
            end = POWEROFF
        else:
            end = QEMU_FAILED
    log.debug("VM ended: %s (exit %s) after %.2f s", end, proc.returncode, exited)
    if flooded:
        log.warning("%s; the VM was stopped", flooded)
    return VmResult(
        end=end,
        exit_code=proc.returncode,
        run_dir=run_dir,
        messages=channel.messages,
        bad_lines=list(channel.bad.first),
        panic_line=panic_line,
        stderr_tail=stderr_tail,
        started=started,
        first_message_s=channel.first_at,
        exited_s=exited,
        blockstats=monitor.blockstats if monitor else None,
        bad_line_count=channel.bad.count,
        rejected_count=channel.rejected.count,
        rejected=list(channel.rejected.first),
        flooded=flooded,
        channel_bytes=channel.lines.total,
        console_bytes=console.lines.total if console else 0,
        console_long_lines=console.long_lines if console else 0,
        host_wait=host_wait,
    )
