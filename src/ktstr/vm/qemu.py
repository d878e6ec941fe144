"""The one place that builds QEMU's argv, from a topology and VM options."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ktstr import wire
from ktstr.errors import ConfigError, EnvironmentProblem
from ktstr.topology import Topology
from ktstr.vm import qemu_fetch

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
# Kernel options that shorten a boot under emulation and keep the console useful:
# loglevel=5 prints warnings and worse (WARN splats) but not the info chatter;
# panic=-1 reboots at once on panic, which -no-reboot turns into a QEMU exit.
BASE_CMDLINE = (
    "console=ttyS0 panic=-1 loglevel=5 rdinit=/init no_timer_check tsc=reliable "
    "i8042.noaux i8042.nokbd i8042.nopnp mitigations=off"
)


QEMU_ENV = "KTSTR_QEMU"
# The oldest QEMU measured to do what Debian 12's 7.2 cannot under TCG: boot a guest whose
# APIC IDs pass 255 (x2APIC with interrupt remapping), and run multi-threaded TCG without
# the guest oopsing on a stale int3.  Versions between were not measured, so not trusted.
CAPABLE_VERSION = (10, 0)
XAPIC_MAX_ID = 255


@dataclass(frozen=True)
class QemuCommand:
    """The QEMU a VM starts with: argv prefix (binary, firmware ``-L`` dirs), version, why."""

    prefix: tuple[str, ...]
    version: str
    source: str  # "system", "cache" or "path"
    reason: str
    cached: qemu_fetch.CachedQemu | None = None

    @property
    def binary(self) -> str:
        return self.prefix[0]

    @property
    def capable(self) -> bool:
        """Whether it can boot >255 APIC IDs and multi-threaded TCG (see CAPABLE_VERSION)."""
        return qemu_fetch.version_key(self.version) >= CAPABLE_VERSION

    def env(self) -> dict[str, str] | None:
        """The environment to start it with; None means ours, unchanged."""
        return self.cached.env() if self.cached else None

    def describe(self) -> str:
        return f"QEMU {self.version} ({self.binary})"


def max_apic_id(topology: Topology) -> int:
    """The highest APIC ID QEMU gives this topology (one socket per LLC, see ``qemu_args``)."""
    return qemu_fetch.max_apic_id(topology.llcs, topology.cores_per_llc, topology.threads_per_core)


def needs_x2apic(topology: Topology) -> bool:
    return max_apic_id(topology) > XAPIC_MAX_ID


def _needs(big: Topology | None, multi: bool) -> list[str]:
    """What a VM asks of QEMU that 7.2 cannot do under TCG, one phrase each."""
    out = []
    if big is not None:
        out.append(
            f"topology {big.name} under TCG (APIC IDs up to {max_apic_id(big)}: "
            f"above {XAPIC_MAX_ID} needs x2APIC)"
        )
    if multi:
        out.append("multi-threaded TCG (older QEMU oopses the guest on a stale int3)")
    return out


@functools.cache
def _version(binary: str) -> str:
    """``binary --version``, once per binary and process."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return qemu_fetch.parse_version_output(out) or "unknown"


def system_qemu(reason: str = "the system QEMU") -> QemuCommand | None:
    """The ``qemu-system-x86_64`` on PATH, or None."""
    path = shutil.which(QEMU)
    return QemuCommand((path,), _version(path), "system", reason) if path else None


def _from_cache(entry: qemu_fetch.CachedQemu, reason: str) -> QemuCommand:
    return QemuCommand(tuple(entry.argv_prefix()), entry.version, "cache", reason, entry)


def _from_path(request: str, root: Path) -> QemuCommand:
    found = shutil.which(request)
    if not found:
        raise ConfigError(
            f"{QEMU_ENV}={request!r} is neither auto, system nor an executable QEMU",
            f"set {QEMU_ENV} to auto, system or the path of a qemu-system-x86_64",
        )
    path = Path(found).resolve()
    reason = f"{QEMU_ENV}={request}"
    # A cached binary needs its unpacked firmware: it looks in /usr/share otherwise.
    if root.is_dir():
        for candidate in root.iterdir():
            entry = qemu_fetch.read_entry(candidate)
            if entry and entry.binary.resolve() == path:
                return _from_cache(entry, reason)
    return QemuCommand((str(path),), _version(str(path)), "path", reason)


def _refuse(cmd: QemuCommand, needs: list[str]) -> None:
    """A QEMU the user chose that cannot do what the VM needs: refuse, or warn for MTTCG
    (which mostly works on 7.2: the user may want to see it fail)."""
    if cmd.capable:
        return
    wanted = ".".join(map(str, CAPABLE_VERSION))
    big = [n for n in needs if n.startswith("topology")]
    if big:
        raise EnvironmentProblem(
            f"{cmd.describe()} cannot run {big[0]}, which needs QEMU {wanted} or newer",
            f"unset {QEMU_ENV} (or set it to auto) and run 'ktstr qemu fetch'",
        )
    if needs:
        log.warning(
            "%s, chosen by %s, may oops the guest under multi-threaded TCG; QEMU %s or newer "
            "does not (unset %s and run 'ktstr qemu fetch')",
            cmd.describe(),
            cmd.reason,
            wanted,
            QEMU_ENV,
        )


def choose_qemu(topology: Topology | None = None, tcg_mode: str | None = None) -> QemuCommand:
    """The QEMU for a VM of ``topology`` under TCG mode ``tcg_mode`` (None: under KVM).

    ``KTSTR_QEMU`` decides: ``system`` (the ``qemu-system-x86_64`` on PATH), a path,
    or ``auto`` (the default).  ``auto`` uses the system QEMU whenever it can run the
    VM, because it is what the user has installed and keeps up to date; it uses the
    newest QEMU in ktstr's cache (``ktstr qemu fetch``) only when the VM needs what
    the system one cannot do: a topology whose APIC IDs pass 255 under TCG, or
    multi-threaded TCG (QEMU 7.2 oopses the guest on a stale int3 about one boot in
    20).  A needed QEMU that is missing is refused before boot, in one sentence.
    Chosen once per process for all VMs that need nothing more, and once for each
    need (a topology past APIC ID 255, multi-threaded TCG).
    """
    request = (os.environ.get(QEMU_ENV) or "auto").strip()
    big = topology if (topology is not None and tcg_mode and needs_x2apic(topology)) else None
    return _choose(request, qemu_fetch.qemu_root(), big, tcg_mode == "multi")


@functools.cache
def _choose(request: str, root: Path, big: Topology | None, multi: bool) -> QemuCommand:
    needs = _needs(big, multi)
    fix_install = "install it with: sudo apt-get install qemu-system-x86"
    if request.lower() == "system":
        cmd = system_qemu(f"{QEMU_ENV}=system")
        if cmd is None:
            raise EnvironmentProblem(f"{QEMU} is not installed ({QEMU_ENV}=system)", fix_install)
        _refuse(cmd, needs)
        return cmd
    if request.lower() != "auto":
        cmd = _from_path(request, root)
        _refuse(cmd, needs)
        return cmd
    system = system_qemu("the system QEMU, used whenever it can run the VM")
    if system and (system.capable or not needs):
        return system
    cached = qemu_fetch.newest_cached(root)
    if needs:
        wanted = ".".join(map(str, CAPABLE_VERSION))
        if cached and qemu_fetch.version_key(cached.version) >= CAPABLE_VERSION:
            return _from_cache(cached, f"needed for {' and '.join(needs)}")
        have = f"the system QEMU is {system.version}" if system else f"{QEMU} is not installed"
        fix = "run 'ktstr qemu fetch'"
        if multi and not big:
            fix += " or unset KTSTR_TCG_THREAD"
        raise EnvironmentProblem(
            f"{' and '.join(needs)} needs QEMU {wanted} or newer, {have} and none is cached", fix
        )
    if cached:
        return _from_cache(cached, f"{QEMU} is not installed; the newest cached QEMU runs it")
    raise EnvironmentProblem(
        f"{QEMU} is not installed", f"{fix_install}, or run 'ktstr qemu fetch'"
    )


# seccomp: no obsolete syscalls, no setuid, no fork/exec, no scheduler or priority changes.
# QEMU needs none of them for a VM it runs for ktstr; a guest escape gets less of the host.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


@functools.cache
def sandbox_supported(qemu: QemuCommand | str) -> bool:
    """Whether this QEMU was built with seccomp and accepts ``-sandbox SANDBOX``.

    Asked once per QEMU and process by starting it with no machine and
    quitting from the monitor (about 0.1 s); any failure means no sandbox.
    """
    cmd = qemu if isinstance(qemu, QemuCommand) else QemuCommand((qemu,), "", "path", "")
    argv = [*cmd.prefix, "-sandbox", SANDBOX, "-machine", "none", "-nodefaults"]
    argv += ["-no-user-config", "-display", "none", "-monitor", "stdio"]
    try:
        proc = subprocess.run(
            argv, input="quit\n", capture_output=True, text=True, timeout=30, env=cmd.env()
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def qemu_version(topology: Topology | None = None, accel: str | None = None) -> str:
    """The version of the QEMU a VM of ``topology`` under ``accel`` starts (default: an
    ordinary VM).  It keys the accelerator cache and goes into every record, so it must
    be the version of the binary really started."""
    return choose_qemu(topology, _tcg_mode(accel)).version


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


def _tcg_mode(accel: str | None) -> str | None:
    """The TCG threading of a VM under ``accel`` (None under KVM, or when not known)."""
    return tcg_thread_mode() if accel == "tcg" else None


def machine_args(topology: Topology, accel: str) -> list[str]:
    """``-M pc``, or, when APIC IDs pass 255, q35 with an IOMMU remapping interrupts.

    The guest can address a CPU above APIC ID 255 only in x2APIC mode, and Linux
    turns x2APIC on only with interrupt remapping (``eim``); the Intel IOMMU that
    gives it needs the q35 machine.  Under KVM, remapping also needs a split irqchip
    (untested here: this project's hosts cannot run KVM).
    """
    if not needs_x2apic(topology):
        return ["-M", "pc"]
    machine = "q35" if accel != "kvm" else "q35,kernel-irqchip=split"
    return ["-M", machine, "-device", "intel-iommu,intremap=on,eim=on"]


def qemu_for(cfg: VmConfig) -> QemuCommand:
    """The QEMU ``cfg`` starts with; ``build_argv`` and the process's environment use it."""
    return choose_qemu(cfg.topology, _tcg_mode(cfg.accel))


def accel_args(accel: str, topology: Topology) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    # topoext lets the AMD-flavoured 'max' CPU model expose SMT siblings.
    cpu = "max,+topoext" if topology.threads_per_core > 1 else "max"
    return ["-accel", f"tcg,thread={tcg_thread_mode()}", "-cpu", cpu]


def build_argv(cfg: VmConfig) -> list[str]:
    """The whole argv of one VM; start it with ``qemu_for(cfg).env()``."""
    qemu = qemu_for(cfg)
    argv = [
        *qemu.prefix,
        *machine_args(cfg.topology, cfg.accel),
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
    if sandbox_supported(qemu):
        argv += ["-sandbox", SANDBOX]
    return argv
