"""The one place that builds QEMU's argv, from a topology and VM options."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from ktstr import wire
from ktstr.errors import ConfigError, EnvironmentProblem
from ktstr.topology import Topology

QEMU = "qemu-system-x86_64"
# Kernel options that shorten a boot under emulation and keep the console useful:
# loglevel=5 prints warnings and worse (WARN splats) but not the info chatter;
# panic=-1 reboots at once on panic, which -no-reboot turns into a QEMU exit.
BASE_CMDLINE = (
    "console=ttyS0 panic=-1 loglevel=5 rdinit=/init no_timer_check tsc=reliable "
    "i8042.noaux i8042.nokbd i8042.nopnp mitigations=off"
)


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise EnvironmentProblem(
            f"{QEMU} is not installed", "install it with: sudo apt-get install qemu-system-x86"
        )
    return path


# seccomp: no obsolete syscalls, no setuid, no fork/exec, no scheduler or priority changes.
# QEMU needs none of them for a VM it runs for ktstr; a guest escape gets less of the host.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


@functools.cache
def sandbox_supported(binary: str) -> bool:
    """Whether this QEMU was built with seccomp and accepts ``-sandbox SANDBOX``.

    Asked once per binary and process by starting it with no machine and
    quitting from the monitor (about 0.1 s); any failure means no sandbox.
    """
    argv = [binary, "-sandbox", SANDBOX, "-machine", "none", "-nodefaults", "-no-user-config"]
    argv += ["-display", "none", "-monitor", "stdio"]
    try:
        proc = subprocess.run(argv, input="quit\n", capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


@functools.lru_cache(maxsize=1)
def qemu_version() -> str:
    out = subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "unknown"


@dataclass
class VmConfig:
    """What one VM is: kernel, initrd, topology, accelerator, console mode."""

    kernel: str
    initrd: str
    topology: Topology
    accel: str  # "kvm" or "tcg"
    cmdline: list[str] = field(default_factory=list)
    interactive: bool = False  # console on the user's terminal
    channel_fd: int | None = None  # host end is ours; this one goes to QEMU
    drive_args: list[str] = field(default_factory=list)  # -drive/-device pairs for disks
    monitor_fd: int | None = None  # QMP; the VM then pauses at power-off instead of exiting


TCG_THREAD_MODES = ("single", "multi")


def tcg_thread_mode() -> str:
    """TCG's threading, ``single`` unless ``KTSTR_TCG_THREAD=multi``.

    Multi-threaded TCG sometimes runs a stale ``int3`` after the guest
    kernel live-patches its code (static keys flip while sched domains are
    built, and again whenever a sched_ext scheduler attaches): the guest
    oopses in code that is fine.  Measured on QEMU 7.2 with a 2-node
    8-vCPU guest: 1 boot in 20.  A harness must not report kernel bugs
    that are not there, so one host thread runs all vCPUs by default; on
    a 2-core host that costs little, and 8 vCPUs even boot faster.
    """
    mode = os.environ.get("KTSTR_TCG_THREAD", "single").lower()
    if mode not in TCG_THREAD_MODES:
        raise ConfigError(
            f"KTSTR_TCG_THREAD={mode!r} is not one of {', '.join(TCG_THREAD_MODES)}",
            "set it to single or multi, or unset it",
        )
    return mode


def accel_args(accel: str, topology: Topology) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    # topoext lets the AMD-flavoured 'max' CPU model expose SMT siblings.
    cpu = "max,+topoext" if topology.threads_per_core > 1 else "max"
    return ["-accel", f"tcg,thread={tcg_thread_mode()}", "-cpu", cpu]


def build_argv(cfg: VmConfig) -> list[str]:
    binary = qemu_binary()
    argv = [
        binary,
        "-M",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        cfg.kernel,
        "-initrd",
        cfg.initrd,
        "-append",
        " ".join([BASE_CMDLINE, *cfg.cmdline]),
    ]
    argv += accel_args(cfg.accel, cfg.topology)
    argv += cfg.topology.qemu_args()
    signal = "on" if not cfg.interactive else "off"
    argv += ["-chardev", f"stdio,id=console0,signal={signal}", "-serial", "chardev:console0"]
    if cfg.channel_fd is not None:
        argv += [
            "-device",
            "virtio-serial-pci,id=vser0",
            "-chardev",
            f"socket,id=ktstr0,fd={cfg.channel_fd}",
            "-device",
            f"virtserialport,bus=vser0.0,chardev=ktstr0,name={wire.PORT_NAME}",
        ]
    argv += cfg.drive_args
    if cfg.monitor_fd is not None:
        argv += [
            "-no-shutdown",
            "-chardev",
            f"socket,id=qmp0,fd={cfg.monitor_fd}",
            "-mon",
            "chardev=qmp0,mode=control",
        ]
    argv += ["-device", "pvpanic", "-action", "panic=exit-failure"]
    if sandbox_supported(binary):
        argv += ["-sandbox", SANDBOX]
    return argv
