"""Choose KVM only when it really works; otherwise TCG, and say why.

"/dev/kvm exists" is not enough: some hosts expose a paravirtual KVM
(``kvm_pvm``) on which a stock kernel dies with an emulation failure.
So ``auto`` checks the host modules first and then boots a tiny guest
under KVM once, caching the answer per host and QEMU version.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ktstr import paths
from ktstr.errors import ConfigError, VmError
from ktstr.initramfs.image import busybox_archive
from ktstr.topology import Topology
from ktstr.vm import qemu

log = logging.getLogger(__name__)

CHOICES = ("auto", "kvm", "tcg")
_MARKER = "ktstr-kvm-probe-ok"
_PROBE_TIMEOUT_S = 20  # a KVM guest reaches a busybox init in well under 2 s
_PROBE_MEMORY_MIB = 256


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str

    def line(self) -> str:
        return f"accelerator: {self.name} ({self.reason})"


def requested(value: str | None) -> str:
    choice = (value or os.environ.get("KTSTR_ACCEL") or "auto").lower()
    if choice not in CHOICES:
        raise ConfigError(
            f"accelerator {choice!r} is not one of {', '.join(CHOICES)}",
            "use --accel auto|kvm|tcg or unset KTSTR_ACCEL",
        )
    return choice


def host_kvm_problem(sys_module: Path = Path("/sys/module"), dev: str = "/dev/kvm") -> str | None:
    """Why KVM cannot be used here, judged from the host alone; None if it may work."""
    if not os.path.exists(dev):
        return f"{dev} does not exist"
    if not os.access(dev, os.R_OK | os.W_OK):
        return f"{dev} is not readable and writable by this user"
    vendors = [m for m in ("kvm_intel", "kvm_amd") if (sys_module / m).exists()]
    if (sys_module / "kvm_pvm").exists() and not vendors:
        return "the host's KVM is kvm_pvm, a paravirtual backend stock kernels cannot boot on"
    return None


def _cache_path() -> Path:
    key = f"{platform.node()}-{platform.release()}-qemu{qemu.qemu_version()}"
    return paths.cache_dir() / "accel" / f"{key}.json"


def _cached(cache: Path) -> Accel | None:
    """The cached verdict; a corrupt file is a pure cache's loss: ignored, probed again."""
    if not cache.is_file():
        return None
    try:
        data = json.loads(cache.read_text())
        result = Accel(**data)
        if result.name in ("kvm", "tcg") and isinstance(result.reason, str):
            return result
    except (OSError, ValueError, TypeError):
        pass
    log.info("ignoring the unreadable accelerator cache %s; probing KVM again", cache)
    return None


def boot_probe(kernel: str) -> str | None:
    """Boot a busybox guest under KVM; None if it reached init, else what went wrong.

    The test boot is an ordinary VM: argv from the one builder, run by the
    one owner (parent-death kill, timeout), inside a host VM slot.
    """
    from ktstr.vm import lifecycle
    from ktstr.vm.slots import vm_slot

    archive = busybox_archive(f"#!/bin/busybox sh\necho {_MARKER}\n/bin/busybox poweroff -f\n")
    with tempfile.TemporaryDirectory(prefix="ktstr-kvm-probe-") as tmp:
        run_dir = Path(tmp)
        initrd = run_dir / "initrd.cpio"
        with open(initrd, "wb") as f:
            archive.write(f)
        cfg = qemu.VmConfig(
            kernel, str(initrd), Topology.parse("1n1l1c1t", _PROBE_MEMORY_MIB), "kvm"
        )
        with vm_slot():
            result = lifecycle.run_vm(cfg, run_dir, _PROBE_TIMEOUT_S)
        path = result.console_path
        console = path.read_text(errors="replace") if path.is_file() else ""
    if _MARKER in console:
        return None
    if result.end == lifecycle.TIMEOUT:
        return f"a KVM test boot did not reach init in {_PROBE_TIMEOUT_S} s"
    lines = (result.stderr_tail + "\n" + console).strip().splitlines()
    detail = next((ln for ln in lines if "KVM" in ln or "error" in ln.lower()), None)
    detail = (detail or (lines[-1] if lines else "")).strip()
    return f"a KVM test boot failed ({detail or f'exit {result.exit_code}'})"


def choose(request: str | None = None, kernel: str | None = None) -> Accel:
    """The accelerator for this run, by override, cache or probe."""
    choice = requested(request)
    if choice == "tcg":
        return Accel("tcg", "requested")
    problem = host_kvm_problem()
    if choice == "kvm":
        if problem:
            raise VmError(f"KVM was requested but {problem}", "use --accel tcg or auto")
        return Accel("kvm", "requested")
    if problem:
        return Accel("tcg", problem)
    cache = _cache_path()
    cached = _cached(cache)
    if cached:
        return cached
    if kernel is None:
        return Accel("tcg", "KVM not yet verified on this host (no kernel to probe with)")
    failure = boot_probe(kernel)
    result = Accel("tcg", failure) if failure else Accel("kvm", "a KVM test boot reached init")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(asdict(result)))
    return result
