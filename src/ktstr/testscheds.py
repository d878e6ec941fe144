"""Build the kernel's own example sched_ext schedulers (``tools/sched_ext``).

They come from Debian's ``linux-source`` package of the same version as
the kernel, built with clang and the tree's own libbpf and bpftool, once
per kernel release and compiler, into the cache.  Two compilers are
built because the kernel's verifier rejects some programs an older clang
emits (scx_qmap with clang 19); discovery prefers the newer build.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from ktstr import fixture_sched, paths
from ktstr.errors import EnvironmentProblem, KernelError
from ktstr.kernel import debian
from ktstr.kernel.image import KernelInfo
from ktstr.kernel.store import cached_dirs, meta
from ktstr.scheduler import built_root

log = logging.getLogger(__name__)
COMPILERS = ("19", "22")
_SUBTREES = (
    "tools",
    "include",
    "kernel/bpf",
    "kernel/sched",
    "scripts",
    "arch/x86/include",
    "arch/x86/entry/syscalls",
    "Makefile",
    "COPYING",
)


def _entry_for(kernel: KernelInfo) -> Path:
    for entry in cached_dirs():
        if entry.name == kernel.release:
            return entry
    raise KernelError(
        f"kernel {kernel.release} was not fetched by ktstr, so its source package is unknown",
        "use a kernel from 'ktstr kernel fetch'",
    )


def source_tree(kernel: KernelInfo) -> Path:
    """The unpacked subset of Debian's linux-source that matches the kernel."""
    info = meta(_entry_for(kernel))
    series = re.match(r"(\d+\.\d+)", kernel.release)
    if not series:
        raise KernelError(f"cannot tell the source series of {kernel.release}", "fetch again")
    package = f"linux-source-{series.group(1)}"
    root = paths.cache_dir() / "src" / kernel.release
    tree = root / package
    if (root / ".complete").is_file():
        return tree
    apt = debian.PrivateApt(
        str(info["mirror"]), str(info["suite"]), paths.cache_dir() / "apt" / str(info["suite"])
    )
    downloads = paths.cache_dir() / "src-dl"
    downloads.mkdir(parents=True, exist_ok=True)
    files = " ".join(str(v) for v in dict(info.get("packages", {})).values())
    version = re.search(r"_([^_]+)_amd64\.deb", files)
    pattern = f"{package}_{version.group(1) if version else '*'}_*.deb"
    deb = next(iter(downloads.glob(pattern)), None) or apt.download(package, downloads)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log.info("unpacking %s (only the parts tools/sched_ext needs)", deb.name)
    members = [f"{package}/{s}" for s in _SUBTREES]
    script = (
        f"dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/src/{package}.tar.xz "
        f"| tar -xJ -C '{root}' --wildcards " + " ".join(f"'{m}'" for m in members)
    )
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise EnvironmentProblem(
            f"unpacking {deb.name} failed: {proc.stderr.strip()[-300:]}", f"delete {root} and retry"
        )
    (root / ".complete").touch()
    return tree


def available_compilers() -> list[str]:
    return [c for c in COMPILERS if shutil.which(f"clang-{c}") and shutil.which(f"ld.lld-{c}")]


def build(
    kernel: KernelInfo, compilers: list[str] | None = None, force: bool = False
) -> list[Path]:
    """Build every example scheduler with each compiler; return the bin directories."""
    compilers = compilers or available_compilers()
    if not compilers:
        raise EnvironmentProblem(
            "no clang with lld is installed to build the test schedulers",
            "install them: sudo apt-get install clang-19 lld-19 llvm-19 libelf-dev zlib1g-dev",
        )
    vmlinux = kernel.boot_path
    out_dirs = []
    tree = None
    for comp in compilers:
        out = built_root() / kernel.release / f"clang-{comp}"
        if (out / "meta.json").is_file() and not force:
            out_dirs.append(out / "bin")
            continue
        tree = tree or source_tree(kernel)
        sched_dir = tree / "tools" / "sched_ext"
        out.mkdir(parents=True, exist_ok=True)
        logfile = out / "build.log"
        started = time.monotonic()
        with open(logfile, "w") as logf:
            subprocess.run(
                ["make", "-C", str(sched_dir), "clean"],
                stdout=logf,
                stderr=subprocess.STDOUT,
                check=False,
            )
            proc = subprocess.run(
                [
                    "make",
                    "-C",
                    str(sched_dir),
                    f"LLVM=-{comp}",
                    f"VMLINUX_BTF_PATHS={vmlinux}",
                    f"-j{os.cpu_count() or 1}",
                ],
                stdout=logf,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if proc.returncode != 0:
            raise EnvironmentProblem(
                f"building the test schedulers with clang-{comp} failed", f"see {logfile}"
            )
        shutil.rmtree(out / "bin", ignore_errors=True)
        shutil.copytree(sched_dir / "build" / "bin", out / "bin")
        (out / "meta.json").write_text(
            json.dumps(
                {
                    "release": kernel.release,
                    "compiler": f"clang-{comp}",
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_s": round(time.monotonic() - started, 1),
                },
                indent=1,
            )
            + "\n"
        )
        log.info("built test schedulers with clang-%s in %.0f s", comp, time.monotonic() - started)
        out_dirs.append(out / "bin")
    fixture_sched.build(out_dirs, lambda: tree or source_tree(kernel), vmlinux, force)
    return out_dirs


def listing() -> list[dict[str, str]]:
    rows = []
    root = built_root()
    if not root.is_dir():
        return rows
    for info_file in sorted(root.glob("*/*/meta.json")):
        info = json.loads(info_file.read_text())
        for binary in sorted((info_file.parent / "bin").iterdir()):
            rows.append(
                {
                    "name": binary.name,
                    "path": str(binary),
                    "release": info["release"],
                    "compiler": info["compiler"],
                    "built": info["built"],
                }
            )
    return rows
