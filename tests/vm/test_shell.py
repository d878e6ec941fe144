"""`ktstr shell` gives a working shell on the guest console, with any declared disks."""

import os
import subprocess
import sys
import threading


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
    seen = bytearray()
    ready = threading.Event()

    def reader() -> None:
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            seen.extend(chunk)
            if b"interactive shell" in seen:
                ready.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert ready.wait(300), seen.decode(errors="replace")[-2000:]
    proc.stdin.write(
        b"echo cpus=$(grep -c ^processor /proc/cpuinfo)\n"
        b"echo serial=$(cat /sys/block/vda/serial)\n"
        b"echo hi > /mnt/disk0/hello && echo mounted=$(cat /mnt/disk0/hello)\n"
        b"exit\n"
    )
    proc.stdin.flush()
    assert proc.wait(300) == 0, proc.stderr.read().decode()
    thread.join(10)
    assert b"cpus=2" in seen
    assert b"serial=scratch" in seen and b"mounted=hi" in seen
    assert not list(tmp_path.glob("*/disk0.img"))  # the scratch disk went with the VM
