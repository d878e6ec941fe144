"""``ktstr doctor``: what this host has, what it lacks, and the one command that fixes each."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from ktstr import paths
from ktstr.errors import KtstrError
from ktstr.host import mem_available_mib
from ktstr.kernel import store
from ktstr.presets import preset
from ktstr.vm import accel, qemu

APT = "sudo apt-get install -y"
FETCH_QEMU = "ktstr qemu fetch"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def qemu_checks() -> list[Check]:
    """The QEMU ordinary VMs start with, and the one for what only QEMU 10 does, each with why.

    Two rows because ``KTSTR_QEMU=auto`` may use two binaries: the system one
    for ordinary VMs, and ktstr's cached newer one for guests whose APIC IDs
    pass 255 under TCG and for multi-threaded TCG (see ``qemu.choose_qemu``).
    """
    out: list[Check] = []
    try:
        ordinary = qemu.choose_qemu()
        out.append(
            Check("qemu", True, f"{ordinary.describe()} for ordinary VMs: {ordinary.reason}")
        )
    except KtstrError as err:
        out.append(Check("qemu", False, err.cause, err.fix or f"{APT} qemu-system-x86"))
        ordinary = None
    big_topology = preset("max-cpu")
    what = (
        f"guests past APIC ID {qemu.XAPIC_MAX_ID} under TCG (preset max-cpu) and multi-threaded TCG"
    )
    try:
        big = qemu.choose_qemu(big_topology, "single")
    except KtstrError as err:
        have = f"the system QEMU is {ordinary.version}" if ordinary else "no system QEMU either"
        detail = f"none cached and {have}: {what} cannot run"
        if (os.environ.get(qemu.QEMU_ENV) or "auto").lower() != "auto":
            detail = err.cause
        out.append(Check("qemu 10", False, detail, err.fix or FETCH_QEMU, required=False))
        return out
    if ordinary is not None and big.prefix == ordinary.prefix:
        detail = f"not needed: {big.describe()} also runs {what}"
    else:
        where = "cached by 'ktstr qemu fetch'" if big.source == "cache" else big.reason
        detail = f"{big.describe()}, {where}, for {what}"
    out.append(Check("qemu 10", True, detail, required=False))
    return out


def checks() -> list[Check]:
    out: list[Check] = []
    out += qemu_checks()
    qemu_path = next((c.ok for c in out if c.name == "qemu"), False)
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
    out.append(payload_check())
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


def payload_check() -> Check:
    """The shipped payloads' programs: which are missing, and the packages that provide them."""
    from ktstr.payloads.catalog import PAYLOADS

    missing = sorted(
        {p.package or p.program for p in PAYLOADS.values() if not shutil.which(p.program)}
    )
    programs = sorted({p.program for p in PAYLOADS.values()})
    detail = f"{', '.join(programs)}" + (f"; missing from {', '.join(missing)}" if missing else "")
    return Check("payloads", not missing, detail, f"{APT} {' '.join(missing)}", required=False)


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
