"""The guest image: a base archive cached by content, plus a per-run archive.

The base holds busybox, the Python runtime and ``ktstr.guest``; it is
built once per change of any of them and reused by every VM.  Per-run
data (the spec, later the scheduler under test) goes in a second small
archive concatenated after it, which the kernel unpacks on top.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktstr import paths, wire
from ktstr.errors import EnvironmentProblem
from ktstr.initramfs import elfdeps
from ktstr.initramfs.cpio import Archive
from ktstr.initramfs.pyruntime import PythonRuntime, compile_sourceless, pyc_path, stdlib_modules

log = logging.getLogger(__name__)

# Bump when the layout of the base image changes without a source change.
LAYOUT_VERSION = "1"
GUEST_LIB = "/ktstr/lib"
_PKG_ROOT = Path(__file__).resolve().parent.parent  # src/ktstr
# Modules imported to find the stdlib closure of the guest.
GUEST_ENTRY_MODULES = ["ktstr.guest.agent"]


def lazy_imports() -> list[str]:
    """The guest's ``LAZY_IMPORTS``, read from its source: the host never imports the guest."""
    tree = ast.parse((_PKG_ROOT / "guest" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "LAZY_IMPORTS" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise EnvironmentProblem("ktstr/guest/__init__.py has no LAZY_IMPORTS", "reinstall ktstr")


def guest_sources() -> list[Path]:
    """The host files that make up the guest side: ``ktstr.guest`` and ``ktstr.wire``."""
    return sorted((_PKG_ROOT / "guest").glob("*.py")) + [_PKG_ROOT / "wire.py"]


def find_busybox() -> str:
    for candidate in (os.environ.get("KTSTR_BUSYBOX"), "/bin/busybox", shutil.which("busybox")):
        if candidate and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise EnvironmentProblem(
        "busybox is not installed", "install it with: sudo apt-get install busybox-static"
    )


def busybox_archive(init_script: str) -> Archive:
    """A minimal image: busybox, a console, and ``init_script`` as /init (probes, benches)."""
    archive = Archive()
    archive.add_file("bin/busybox", Path(find_busybox()).read_bytes(), 0o755)
    archive.add_char_device("dev/console", 5, 1)
    archive.add_file("init", init_script.encode(), 0o755)
    return archive


def _busybox_applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return sorted(a for a in out.split() if a and "/" not in a)


def init_script(runtime: PythonRuntime, lib_dirs: list[str]) -> str:
    """/init: set the environment, hand over to the agent, power off whatever happens."""
    return f"""#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PYTHONHOME={runtime.prefix}
export PYTHONPATH={GUEST_LIB}
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUTF8=1
export LD_LIBRARY_PATH={":".join(lib_dirs)}
{runtime.executable} -S -c 'from ktstr.guest.agent import main; main()'
echo "ktstr-init: agent exited with status $?; powering off"
/bin/busybox poweroff -f
/bin/busybox sleep 10
"""


def strip_symbols(data: bytes) -> bytes:
    """Drop symbols from a shared library when binutils' strip is there."""
    tool = shutil.which("strip")
    if not tool:
        return data
    src = paths.cache_dir() / f"strip-in-{os.getpid()}"
    dst = paths.cache_dir() / f"strip-out-{os.getpid()}"
    try:
        src.write_bytes(data)
        subprocess.run(
            [tool, "--strip-unneeded", "-o", str(dst), str(src)], check=True, capture_output=True
        )
        return dst.read_bytes()
    except (OSError, subprocess.CalledProcessError):
        return data
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


def _add_binary(archive: Archive, guest_path: str, host_path: str, strip: bool = False) -> None:
    data = Path(host_path).read_bytes()
    archive.add_file(guest_path, strip_symbols(data) if strip else data, 0o755)


def build_base(runtime: PythonRuntime, busybox: str) -> Archive:
    """Assemble the base image in memory."""
    archive = Archive()
    for d in ("proc", "sys", "dev", "tmp", "run", "etc", "root", "ktstr", "sbin", "usr/bin"):
        archive.add_dir(d)
    archive.add_char_device("dev/console", 5, 1)
    archive.add_char_device("dev/null", 1, 3, 0o666)
    archive.add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    for applet in _busybox_applets(busybox):
        if applet != "busybox":
            archive.add_symlink(f"bin/{applet}", "busybox")

    sources = guest_sources()
    stdlib_files = stdlib_modules(runtime, _PKG_ROOT, GUEST_ENTRY_MODULES + lazy_imports())
    elves = [runtime.executable]
    for path in stdlib_files:
        if path.endswith(".py"):
            archive.add_file(pyc_path(path), compile_sourceless(path, path))
        else:
            archive.add_file(path, Path(path).read_bytes(), 0o755)
            elves.append(path)
    _add_binary(archive, runtime.executable, runtime.executable)
    libs = elfdeps.closure(elves + [busybox])
    placed: dict[str, str] = {}  # host file -> first guest path, later ones link to it
    for guest_path, host_path in sorted(libs.items()):
        if host_path in placed:
            archive.add_symlink(guest_path, placed[host_path])
            continue
        placed[host_path] = "/" + guest_path.lstrip("/")
        _add_binary(archive, guest_path, host_path, strip=".so" in guest_path)
    lib_dirs = sorted({os.path.dirname(p) for p in libs})

    archive.add_file(f"{GUEST_LIB}/ktstr/__init__.pyc", compile_sourceless(os.devnull, "ktstr"))
    for src in sources:
        rel = src.relative_to(_PKG_ROOT.parent)
        archive.add_file(f"{GUEST_LIB}/{pyc_path(str(rel))}", compile_sourceless(src, str(rel)))
    archive.add_file("init", init_script(runtime, lib_dirs).encode(), 0o755)
    return archive


def base_key(runtime: PythonRuntime, busybox: str) -> str:
    h = hashlib.sha256(LAYOUT_VERSION.encode())
    h.update(runtime.identity().encode())
    st = os.stat(busybox)
    h.update(f"{busybox}|{st.st_size}|{st.st_mtime_ns}".encode())
    builders = sorted(Path(__file__).resolve().parent.glob("*.py"))
    for src in guest_sources() + builders:
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BaseImage:
    path: Path
    size: int
    built: bool  # False when it came from the cache
    build_s: float


def base_image() -> BaseImage:
    """The cached base image, built if the guest code or its runtime changed."""
    runtime = PythonRuntime.host()
    busybox = find_busybox()
    key = base_key(runtime, busybox)
    cache = paths.cache_dir() / "initramfs"
    target = cache / f"base-{key}.cpio"
    if target.exists():
        return BaseImage(target, target.stat().st_size, False, 0.0)
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    archive = build_base(runtime, busybox)
    tmp = target.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as out:
            size = archive.write(out)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    log.debug(
        "built base initramfs %s: %d entries, %.1f MiB in %.2f s",
        target.name,
        len(archive),
        size / 2**20,
        elapsed,
    )
    return BaseImage(target, size, True, elapsed)


def run_archive(spec: dict[str, Any], files: dict[str, bytes] | None = None) -> bytes:
    """The per-run archive: the spec and any extra files, as bytes."""
    archive = Archive()
    archive.add_file(wire.SPEC_PATH, json.dumps(spec, sort_keys=True).encode())
    for path, data in (files or {}).items():
        archive.add_file(path, data, 0o755)
    buf = io.BytesIO()
    archive.write(buf)
    return buf.getvalue()


def write_initrd(
    dest: Path,
    base: BaseImage,
    spec: dict[str, Any],
    files: dict[str, bytes] | None = None,
    archives: Sequence[Path] = (),
) -> Path:
    """Concatenate base, cached extra (payload programs) and per-run archives for ``-initrd``."""
    with open(dest, "wb") as out:
        for part in (base.path, *archives):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        out.write(run_archive(spec, files))
    os.chmod(dest, stat.S_IRUSR | stat.S_IWUSR)
    return dest
