"""Build the kernel's own example sched_ext schedulers (``tools/sched_ext``).

They come from Debian's ``linux-source`` package of the same version as
the kernel, built with clang and the tree's own libbpf and bpftool, once
per kernel release and compiler, into the cache.  Two compilers are
built because the kernel's verifier rejects some programs an older clang
emits (scx_qmap with clang 19); discovery prefers the newer build.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ktstr import fixture_sched, paths
from ktstr.errors import ConfigError, EnvironmentProblem, KernelError
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
    deb = apt.download(package, downloads, version.group(1) if version else None)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log.info("unpacking %s (only the parts tools/sched_ext needs)", deb.name)
    members = [f"{package}/{s}" for s in _SUBTREES]
    needed_for = "unpacking the kernel's source package"
    paths.host_tool("xz", needed_for)  # tar -J runs it
    pipeline(
        [paths.host_tool("dpkg-deb", needed_for), "--fsys-tarfile", str(deb)],
        [paths.host_tool("tar", needed_for), "-xO", f"./usr/src/{package}.tar.xz"],
        [paths.host_tool("tar", needed_for), "-xJ", "-C", str(root), "--wildcards", *members],
        what=f"unpacking {deb.name}",
        fix=f"delete {root} and retry",
    )
    (root / ".complete").touch()
    return tree


def pipeline(*argvs: list[str], what: str, fix: str) -> None:
    """``argv | argv | ...`` without a shell: each stage's stdout feeds the next, and every
    stage's exit status is checked (a shell checks only the last without pipefail)."""
    procs: list[subprocess.Popen] = []
    with contextlib.ExitStack() as stack:
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in argvs]
        try:
            feed = None
            for i, argv in enumerate(argvs):
                last = i == len(argvs) - 1
                proc = subprocess.Popen(
                    argv,
                    stdin=feed if feed is not None else subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                    stderr=errs[i],
                )
                if feed is not None:
                    feed.close()  # the next stage alone reads it: SIGPIPE reaches the writer
                feed = proc.stdout
                procs.append(proc)
            codes = [proc.wait() for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        # A stage killed by SIGPIPE only lost its reader: the stage that failed after it
        # is the cause, so it is named first.
        stages = sorted(zip(argvs, codes, errs, strict=True), key=lambda s: s[1] == -signal.SIGPIPE)
        for argv, code, err in stages:
            if code != 0:
                err.seek(0)
                detail = err.read().decode(errors="replace").strip()[-300:] or f"exit {code}"
                raise EnvironmentProblem(f"{what} failed in {Path(argv[0]).name}: {detail}", fix)


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
    for comp in compilers:
        if not comp.isdigit():
            raise ConfigError(
                f"compiler {comp!r} is not a clang major version", "use e.g. --compiler 19,22"
            )
        missing = [t for t in (f"clang-{comp}", f"ld.lld-{comp}") if not shutil.which(t)]
        if missing:
            raise EnvironmentProblem(
                f"{missing[0]} is not installed, so the test schedulers cannot be built with it",
                f"install it with: sudo apt-get install clang-{comp} lld-{comp} llvm-{comp}",
            )
    make = paths.host_tool("make", "building the test schedulers")
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
                [make, "-C", str(sched_dir), "clean"],
                stdout=logf,
                stderr=subprocess.STDOUT,
                check=False,
            )
            proc = subprocess.run(
                [
                    make,
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
        info = paths.json_record(
            info_file,
            ("release", "compiler", "built"),
            "build record ktstr wrote",
            f"rebuild with 'ktstr schedulers build --force', or delete {info_file.parent}",
        )
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
