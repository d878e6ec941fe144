"""Thin wrappers over the syscalls the agent needs (mount, reboot) via libc."""

from __future__ import annotations

import ctypes
import os
import signal

_libc = ctypes.CDLL(None, use_errno=True)
_RB_POWER_OFF = 0x4321FEDC
MS_RDONLY = 1

# (source, target, fstype, options); order matters (sysfs before its children).
MOUNTS = [
    ("proc", "/proc", "proc", ""),
    ("sysfs", "/sys", "sysfs", ""),
    ("devtmpfs", "/dev", "devtmpfs", ""),
    ("tmpfs", "/dev/shm", "tmpfs", ""),  # POSIX shared memory (shm_open): cyclictest, fio
    ("tmpfs", "/tmp", "tmpfs", ""),
    ("tmpfs", "/run", "tmpfs", ""),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate"),
    ("debugfs", "/sys/kernel/debug", "debugfs", ""),
    ("tracefs", "/sys/kernel/tracing", "tracefs", ""),
]


def mount(source: str, target: str, fstype: str, options: str = "", flags: int = 0) -> None:
    os.makedirs(target, exist_ok=True)
    rc = _libc.mount(
        source.encode(), target.encode(), fstype.encode(), flags, options.encode() or None
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def umount(target: str) -> None:
    if _libc.umount(target.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def mount_all() -> list[str]:
    """Mount the pseudo filesystems; return the failures instead of stopping."""
    failures = []
    for source, target, fstype, options in MOUNTS:
        try:
            os.makedirs(target, exist_ok=True)  # devtmpfs has no /dev/shm
            mount(source, target, fstype, options)
        except OSError as err:
            failures.append(str(err))
    return failures


def enable_controllers(root: str = "/sys/fs/cgroup") -> list[str]:
    """Enable every available cgroup v2 controller for the root's children."""
    try:
        with open(f"{root}/cgroup.controllers") as f:
            available = f.read().split()
    except OSError:
        return []
    enabled = []
    for name in available:
        try:
            with open(f"{root}/cgroup.subtree_control", "w") as f:
                f.write(f"+{name}")
            enabled.append(name)
        except OSError:
            pass
    return enabled


def power_off() -> None:
    """Flush and power the VM off now; never returns on success.

    The console's last lines may still sit in the serial port's transmit
    buffer; the kernel's own power-off message bypasses that buffer, so wait
    for it to drain or the host would never see them.
    """
    os.sync()
    signal.signal(signal.SIGALRM, lambda *_: None)  # a stuck console must not hold power-off
    signal.alarm(5)
    _libc.tcdrain(1)  # harmless (ENOTTY) when stdout is not a terminal; EINTR on the alarm
    signal.alarm(0)
    _libc.reboot(_RB_POWER_OFF)
    os.execv("/bin/busybox", ["poweroff", "-f"])
