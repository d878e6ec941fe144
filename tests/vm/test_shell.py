"""`ktstr shell` gives a working shell on the guest console, with any declared disks."""

import os
import subprocess
import sys
import threading
import time

from tests.helpers import HANG_GUARD_S


class Console:
    """The shell's output as it arrives, and a way to wait for a piece of it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.seen = bytearray()
        self.ended = False  # the shell's stdout reached EOF
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            with self._changed:
                self.seen.extend(chunk)
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(self, text: bytes, after: int = 0) -> int:
        """Wait until ``text`` appears past offset ``after``; return where it ends.

        Fails as soon as the output ends without it; the time bound is only a hang guard.
        """
        deadline = time.monotonic() + HANG_GUARD_S
        with self._changed:
            while (at := self.seen.find(text, after)) < 0:
                assert not self.ended, f"{text!r} never came; transcript:\n{self.transcript()}"
                left = deadline - time.monotonic()
                assert left > 0, f"hang guard: no {text!r}; transcript:\n{self.transcript()}"
                self._changed.wait(left)
            return at + len(text)

    def transcript(self) -> str:
        return self.seen.decode(errors="replace")[-4000:]


def test_shell_runs_commands_and_powers_off(tmp_path):
    env = dict(os.environ, KTSTR_RUNS_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ktstr.cli",
            "shell",
            "--topology",
            "1n1l2c1t",
            "--disk",
            "16MiB,fs=ext4,serial=scratch",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        _converse(proc, Console(proc))
    finally:
        if proc.poll() is None:  # a failed wait must not leave the VM behind
            proc.kill()
            proc.wait()
    assert not list(tmp_path.glob("*/disk0.img"))  # the scratch disk went with the VM


def _converse(proc: subprocess.Popen, console: Console) -> None:
    at = console.wait_for(b"interactive shell")
    # One command at a time, as a person types: each answer is awaited before the next.
    for command, answer in [
        (b"echo cpus=$(grep -c ^processor /proc/cpuinfo)", b"cpus=2"),
        (b"echo serial=$(cat /sys/block/vda/serial)", b"serial=scratch"),
        (b"echo hi > /mnt/disk0/hello && echo mounted=$(cat /mnt/disk0/hello)", b"mounted=hi"),
    ]:
        proc.stdin.write(command + b"\n")
        proc.stdin.flush()
        at = console.wait_for(answer, after=at)
    proc.stdin.write(b"exit\n")
    proc.stdin.flush()
    assert proc.wait(HANG_GUARD_S) == 0, proc.stderr.read().decode()
    console.wait_for(b"reboot: Power down", after=at)  # all output is in once stdout ends
