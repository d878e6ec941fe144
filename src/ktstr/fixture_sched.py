"""ktstr's own fixture scheduler, ``scx_ktstr``: build it, describe it.

Its sources (``ktstr/native/scx_ktstr/``: the BPF program and its C
loader) ship inside the package, because ``ktstr schedulers build`` must
find them from an installed ktstr too. They are built exactly like the
kernel's example schedulers: copied next to them in the unpacked
``tools/sched_ext`` and built by that directory's own Makefile, with
the target list overridden (``c-sched-targets=scx_ktstr``), so the same
clang, flags, ``tools/sched_ext/include`` headers, libbpf and bpftool
apply. The binary lands in the same ``bin/`` as the examples, so
``--scheduler scx_ktstr`` resolves it through the usual discovery.

A knob is a misbehaviour switched on by a loader flag or, while it runs,
by a ``name=value`` line in its control file; :func:`knob_args` renders
knobs as flags. See docs/schedulers.md for each knob.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ktstr.errors import ConfigError, EnvironmentProblem
from ktstr.scheduler import Scheduler

log = logging.getLogger(__name__)

NAME = "scx_ktstr"
SOURCES = Path(__file__).parent / "native" / NAME
FILES = (f"{NAME}.bpf.c", f"{NAME}.c")
STAMP = f"{NAME}.json"  # next to bin/: the hash of the sources the binary was built from
CONTROL_FILE = "/run/scx_ktstr/knobs"

# knob name -> its loader flag (the control file uses the knob name)
KNOBS = {
    "pile": "--pile",
    "pile_cgroup": "--pile-cgroup",
    "idle_waste": "--idle-waste",
    "starve_cgroup": "--starve-cgroup",
    "unfair_cgroup": "--unfair-cgroup",
    "unfair_odd": "--unfair-odd",
    "wake_delay_us": "--wake-delay-us",
    "skip_dispatch": "--skip-dispatch",
    "stall_after_s": "--stall-after-s",
    "error_after_s": "--error-after-s",
}

SCX_KTSTR = Scheduler(NAME, binary=NAME, watchdog_args=("--timeout-ms", "{ms}"))


def knob_args(**knobs: object) -> tuple[str, ...]:
    """Loader arguments for knobs: ``knob_args(pile=0)`` -> ``("--pile=0",)``.

    ``True`` switches a knob on with its default (``--pile``, ``--idle-waste``);
    ``None`` and ``False`` leave it out.
    """
    out = []
    for name, value in knobs.items():
        if name not in KNOBS:
            raise ConfigError(
                f"{NAME} has no knob {name!r}", f"its knobs are {', '.join(sorted(KNOBS))}"
            )
        if value is None or value is False:
            continue
        out.append(KNOBS[name] if value is True else f"{KNOBS[name]}={value}")
    return tuple(out)


def sources_hash() -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + (SOURCES / name).read_bytes())
    return digest.hexdigest()[:16]


def is_current(bin_dir: Path) -> bool:
    stamp = bin_dir.parent / STAMP
    if not (bin_dir / NAME).is_file() or not stamp.is_file():
        return False
    return json.loads(stamp.read_text()).get("sources") == sources_hash()


def build_one(sched_dir: Path, compiler: str, vmlinux: Path, bin_dir: Path) -> Path:
    """Build scx_ktstr with ``clang-<compiler>`` in ``sched_dir`` (the kernel's
    tools/sched_ext) and install it into ``bin_dir``."""
    for name in FILES:
        shutil.copyfile(SOURCES / name, sched_dir / name)
    # Only this scheduler's outputs: libbpf, bpftool and vmlinux.h are reused (they do
    # not depend on the BPF compiler), its own object is rebuilt with this clang.
    build = sched_dir / "build"
    for stale in (
        build / "bin" / NAME,
        build / "include" / f"{NAME}.bpf.skel.h",
        build / "include" / f"{NAME}.bpf.subskel.h",
        *(build / "obj" / "sched_ext").glob(f"{NAME}.*"),
    ):
        stale.unlink(missing_ok=True)
    logfile = bin_dir.parent / f"{NAME}.build.log"
    with open(logfile, "w") as logf:
        proc = subprocess.run(
            [
                "make",
                "-C",
                str(sched_dir),
                f"LLVM=-{compiler}",
                f"VMLINUX_BTF_PATHS={vmlinux}",
                f"c-sched-targets={NAME}",
                f"-j{os.cpu_count() or 1}",
                NAME,
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise EnvironmentProblem(f"building {NAME} with clang-{compiler} failed", f"see {logfile}")
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(build / "bin" / NAME, bin_dir / NAME)
    (bin_dir.parent / STAMP).write_text(json.dumps({"sources": sources_hash()}) + "\n")
    log.info("built %s with clang-%s", NAME, compiler)
    return bin_dir / NAME


def build(
    bin_dirs: list[Path], tree: Callable[[], Path], vmlinux: Path, force: bool = False
) -> list[Path]:
    """Build scx_ktstr into each ``.../clang-<N>/bin`` that lacks a current one.

    ``tree`` returns the unpacked kernel source (called only when a build is due).
    """
    built = []
    for bin_dir in bin_dirs:
        if not force and is_current(bin_dir):
            continue
        compiler = bin_dir.parent.name.removeprefix("clang-")
        built.append(build_one(tree() / "tools" / "sched_ext", compiler, vmlinux, bin_dir))
    return built
