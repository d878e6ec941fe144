"""Shared helpers for tests that drive the real ``ktstr`` command."""

import os
import subprocess
import sys


def ktstr(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "ktstr.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def assert_one_sentence(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The command failed with exactly one 'ktstr: error' line and no traceback."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("ktstr: error")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]
