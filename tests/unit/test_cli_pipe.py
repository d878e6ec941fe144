"""Output piped into a reader that stops early (``| head``) ends quietly."""

import subprocess
import sys


def test_a_closed_pipe_is_not_an_error():
    proc = subprocess.run(
        f"{sys.executable} -m ktstr.cli scenarios | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.startswith("steady")
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
