"""``ktstr doctor``: what this host has, what it lacks, and the one command that fixes each."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from ktstr import paths
from ktstr.errors import KtstrError
from ktstr.host import mem_available_mib
from ktstr.kernel import store
from ktstr.vm import accel, qemu

APT = "sudo apt-get install -y"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def checks() -> list[Check]:
    out: list[Check] = []
    qemu_path = shutil.which(qemu.QEMU)
    out.append(
        Check(
            "qemu",
            bool(qemu_path),
            f"{qemu_path} {qemu.qemu_version()}" if qemu_path else "not installed",
            f"{APT} qemu-system-x86",
        )
    )
    bb = shutil.which("busybox") or ("/bin/busybox" if os.path.exists("/bin/busybox") else None)
    out.append(Check("busybox", bool(bb), bb or "not installed", f"{APT} busybox-static"))
    kernel_boot = None
    try:
        infos = [store.cached_info(d) for d in store.cached_dirs()]
    except KtstrError:
        infos = []
    scx = [i for i in infos if i.sched_ext]
    listing = ", ".join(f"{i.release} (sched_ext {'yes' if i.sched_ext else 'no'})" for i in infos)
    out.append(Check("kernel", bool(scx), listing or "none cached", "ktstr kernel fetch"))
    if scx:
        kernel_boot = scx[0].boot_path
    if qemu_path:
        try:
            chosen = accel.choose(None, kernel_boot)
            out.append(Check("accelerator", True, f"{chosen.name}: {chosen.reason}"))
        except KtstrError as err:
            out.append(Check("accelerator", False, str(err), "unset KTSTR_ACCEL"))
    for tool, pkg, why in (
        ("apt-get", "apt", "'ktstr kernel fetch'"),
        ("dpkg-deb", "dpkg", "'ktstr kernel fetch'"),
        ("mkfs.ext4", "e2fsprogs", "disks with fs=ext4"),
    ):
        found = shutil.which(tool) or shutil.which(tool, path="/sbin:/usr/sbin")
        out.append(
            Check(
                tool,
                bool(found),
                found or f"not installed (needed by {why})",
                f"{APT} {pkg}",
                required=False,
            )
        )
    clang = next((c for c in ("clang-22", "clang-19", "clang") if shutil.which(c)), None)
    headers = all(os.path.exists(h) for h in ("/usr/include/libelf.h", "/usr/include/zlib.h"))
    out.append(
        Check(
            "scheduler toolchain",
            bool(clang) and headers and bool(shutil.which("make")),
            f"{clang or 'no clang'}, libelf/zlib headers {'yes' if headers else 'no'}",
            f"{APT} clang-19 llvm-19 libelf-dev zlib1g-dev make",
            required=False,
        )
    )
    cache = paths.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    free_gib = shutil.disk_usage(cache).free / 2**30
    out.append(
        Check(
            "disk",
            free_gib >= 2,
            f"{free_gib:.1f} GiB free under {cache}",
            f"free space under {cache} (2 GiB or more)",
        )
    )
    mem = mem_available_mib()
    out.append(
        Check(
            "memory",
            mem >= 1024,
            f"{mem} MiB available",
            "free memory (1 GiB or more) or run fewer VMs at once",
        )
    )
    return out


def render(results: list[Check]) -> str:
    width = max(len(c.name) for c in results)
    lines = []
    for c in results:
        status = "ok" if c.ok else ("MISSING" if c.required else "missing")
        line = f"{c.name.ljust(width)}  {status:<7}  {c.detail}"
        if not c.ok and c.fix:
            line += f"\n{' ' * width}  {'':<7}  fix: {c.fix}"
        lines.append(line)
    return "\n".join(lines)
