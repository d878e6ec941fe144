"""Shared helpers for tests that drive the real ``ktstr`` command.

No test bounds how long the product takes: VMs end by the product's own
timeouts. The one bound here, ``HANG_GUARD_S``, only stops a suite that
would otherwise wait forever, and says so when it fires.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Far past any run the suite makes, including the wait for a VM slot that other
# test processes hold: reaching it means something hangs, not that it is slow.
HANG_GUARD_S = 3600.0


def ktstr(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a child process, as a user would; only a hang is cut short."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "ktstr.cli", *args],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(
            f"hang guard: 'ktstr {' '.join(args)}' still running after {HANG_GUARD_S:.0f} s "
            "(a hang: the product's own timeouts should have ended it)"
        ) from err


def wait_until(
    condition: Callable[[], T],
    what: str,
    proc: subprocess.Popen | None = None,
    poll_s: float = 0.05,
) -> T:
    """Poll ``condition()`` until it is truthy and return its value.

    Fails at once if ``proc`` exits first (the event can no longer come),
    and after ``HANG_GUARD_S`` only as a hang guard.
    """
    deadline = time.monotonic() + HANG_GUARD_S
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: no {what} after {HANG_GUARD_S:.0f} s")
        time.sleep(poll_s)
    return value


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    """``proc.communicate()``, cut short only by the hang guard (and then killed)."""
    try:
        return proc.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired as err:
        proc.kill()
        proc.communicate()
        raise AssertionError(
            f"hang guard: the process still ran after {HANG_GUARD_S:.0f} s"
        ) from err


def assert_one_sentence(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The command failed with exactly one 'ktstr: error' line and no traceback."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("ktstr: error")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def qmp_commands(sock):
    """Commands as QEMU's streaming parser reads them: JSON objects, newline or not."""
    buf, decoder = "", json.JSONDecoder()
    while data := sock.recv(65536):
        buf += data.decode()
        while buf.strip():
            cmd, end = decoder.raw_decode(buf.lstrip())
            buf = buf.lstrip()[end:]
            yield cmd


def check_status(table: str, check: str) -> str | None:
    """The status column of ``check``'s row in a printed verdict table."""
    row = next((ln.split() for ln in table.splitlines() if ln.startswith(check + " ")), None)
    return row[1] if row else None
