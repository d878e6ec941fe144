"""Choose KVM only when it really works; otherwise TCG, and say why.

"/dev/kvm exists" is not enough: some hosts expose a paravirtual KVM
(``kvm_pvm``) on which a stock kernel dies with an emulation failure.
So ``auto`` checks the host modules first and then boots a tiny guest
under KVM once, caching the answer per host and QEMU version.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ktstr import paths
from ktstr.errors import ConfigError, VmError
from ktstr.initramfs.image import busybox_archive
from ktstr.vm import qemu

CHOICES = ("auto", "kvm", "tcg")
_MARKER = "ktstr-kvm-probe-ok"
_PROBE_TIMEOUT_S = 20  # a KVM guest reaches a busybox init in well under 2 s


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


def boot_probe(kernel: str) -> str | None:
    """Boot a busybox guest under KVM; None if it reached init, else what went wrong."""
    archive = busybox_archive(f"#!/bin/busybox sh\necho {_MARKER}\n/bin/busybox poweroff -f\n")
    with tempfile.NamedTemporaryFile(prefix="ktstr-kvm-probe-", suffix=".cpio") as initrd:
        archive.write(initrd)
        initrd.flush()
        argv = [
            qemu.qemu_binary(),
            "-M",
            "pc",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-kernel",
            kernel,
            "-initrd",
            initrd.name,
            "-append",
            qemu.BASE_CMDLINE,
            "-serial",
            "stdio",
        ]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return f"a KVM test boot did not reach init in {_PROBE_TIMEOUT_S} s"
    if _MARKER in proc.stdout:
        return None
    lines = (proc.stderr + proc.stdout).strip().splitlines()
    detail = next((ln for ln in lines if "KVM" in ln or "error" in ln.lower()), lines[-1:] or [""])
    detail = detail if isinstance(detail, str) else " ".join(detail)
    return f"a KVM test boot failed ({detail.strip() or f'exit {proc.returncode}'})"


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
    if cache.is_file():
        return Accel(**json.loads(cache.read_text()))
    if kernel is None:
        return Accel("tcg", "KVM not yet verified on this host (no kernel to probe with)")
    failure = boot_probe(kernel)
    result = Accel("tcg", failure) if failure else Accel("kvm", "a KVM test boot reached init")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(asdict(result)))
    return result
