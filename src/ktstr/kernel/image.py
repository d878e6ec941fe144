"""What a kernel image is: release, boot method, and the options tests depend on."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ktstr import paths
from ktstr.errors import KernelError
from ktstr.kernel import payload

log = logging.getLogger(__name__)

_VERSION = re.compile(rb"Linux version (\S+) \(")
_XEN_ELFNOTE_PHYS32_ENTRY = 18


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_FOO=y`` lines -> {"CONFIG_FOO": "y"}; unset options are absent."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            config[key] = value.strip().strip('"')
    return config


def has_pvh_note(path: Path) -> bool:
    """True when the ELF carries the Xen PVH entry note QEMU's ``-kernel`` boots from."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for seg in elf.iter_segments():
                if seg.header.p_type != "PT_NOTE":
                    continue
                for note in seg.iter_notes():
                    if note["n_name"] == "Xen" and note["n_type"] == _XEN_ELFNOTE_PHYS32_ENTRY:
                        return True
    except (ELFError, OSError):
        return False
    return False


def _has_btf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return ELFFile(f).get_section_by_name(".BTF") is not None
    except (ELFError, OSError):
        return False


def _release_from_bzimage(data: bytes) -> str | None:
    """The version string the boot header points at (``kernel_version`` field)."""
    ptr = int.from_bytes(data[0x20E:0x210], "little")
    if ptr:
        raw = data[ptr + 0x200 : ptr + 0x200 + 256].split(b"\0", 1)[0]
        if raw:
            return raw.split(b" ", 1)[0].decode(errors="replace")
    return None


def _release_from_elf(path: Path) -> str | None:
    with open(path, "rb") as f:
        data = f.read()
    match = _VERSION.search(data)
    return match.group(1).decode(errors="replace") if match else None


@dataclass
class KernelInfo:
    """The facts ``ktstr kernel info`` prints and runs depend on."""

    path: str
    release: str
    boot_path: str  # the file handed to QEMU's -kernel
    boot_method: str  # "PVH ELF" or "bzImage"
    size: int
    config_path: str | None
    sched_ext: bool | None  # None: no config to tell
    btf: bool | None
    schedstats: bool | None
    modules_dir: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _option(config: dict[str, str] | None, name: str) -> bool | None:
    if config is None:
        return None
    return config.get(name) in ("y", "m")


def extracted_vmlinux(bzimage: Path, data: bytes) -> Path | None:
    """A cached ELF extracted from ``bzimage``, or None if it has no PVH entry."""
    st = bzimage.stat()
    key = hashlib.sha256(f"{bzimage.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    target = paths.cache_dir() / "vmlinux" / f"{key.hexdigest()[:16]}.elf"
    if not target.exists():
        try:
            elf = payload.extract_vmlinux(data)
        except payload.PayloadError:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        tmp.write_bytes(elf)
        os.replace(tmp, target)
    return target if has_pvh_note(target) else None


def _stat_key(*files: Path | None) -> str:
    h = hashlib.sha256()
    for f in files:
        if f is not None and f.exists():
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
        else:
            h.update(f"{f};".encode())
    return h.hexdigest()[:20]


def inspect(
    path: Path, config_path: Path | None = None, modules_dir: Path | None = None
) -> KernelInfo:
    """Inspect a bzImage or an ELF vmlinux (with its config when one is known).

    Reading a 60 MiB image takes a noticeable fraction of a second, so the
    answer is cached by the files' identity (path, size, mtime).
    """
    if path.is_file():
        key = _stat_key(path, config_path, modules_dir)
        memo = paths.cache_dir() / "kernel-info" / f"{key}.json"
        if memo.is_file():
            try:
                return KernelInfo(**json.loads(memo.read_text()))
            except (ValueError, TypeError):  # a pure cache: an older format or corrupt
                log.info("ignoring the unreadable kernel-info cache %s; inspecting again", memo)
    info = _inspect(path, config_path, modules_dir)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(info.as_dict()))
    os.replace(tmp, memo)
    return info


def _inspect(path: Path, config_path: Path | None, modules_dir: Path | None) -> KernelInfo:
    if not path.is_file():
        raise KernelError(
            f"kernel {path} does not exist",
            "pass a path to a bzImage or vmlinux, or a release listed by 'ktstr kernel list'",
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"\x7fELF":
        release = _release_from_elf(path)
        boot_path, method = path, "PVH ELF" if has_pvh_note(path) else "ELF (no PVH note)"
        if method != "PVH ELF":
            raise KernelError(
                f"{path} is an ELF kernel without a PVH entry note, "
                "which QEMU cannot boot directly",
                "build with CONFIG_PVH=y or pass the bzImage instead",
            )
        btf = _has_btf(path)
    else:
        data = path.read_bytes()
        if not payload.is_bzimage(data):
            raise KernelError(
                f"{path} is neither a bzImage nor an ELF vmlinux",
                "pass arch/x86/boot/bzImage or vmlinux from a kernel build",
            )
        release = _release_from_bzimage(data)
        elf = extracted_vmlinux(path, data)
        boot_path, method = (elf, "PVH ELF") if elf else (path, "bzImage")
        btf = _has_btf(elf) if elf else None
    config = None
    if config_path is None and release:
        for candidate in (path.parent / "config", Path(f"/boot/config-{release}")):
            if candidate.is_file():
                config_path = candidate
                break
    if config_path is not None:
        config = parse_config(config_path.read_text(errors="replace"))
        btf = _option(config, "CONFIG_DEBUG_INFO_BTF") if btf is None else btf
    sched_ext = _option(config, "CONFIG_SCHED_CLASS_EXT")
    if sched_ext is None and btf:
        # BTF names every kernel type; sched_ext_ops exists only with sched_ext.
        sched_ext = b"sched_ext_ops" in Path(boot_path).read_bytes()
    return KernelInfo(
        path=str(path),
        release=release or "unknown",
        boot_path=str(boot_path),
        boot_method=method,
        size=path.stat().st_size,
        config_path=str(config_path) if config_path else None,
        sched_ext=sched_ext,
        btf=btf,
        schedstats=_option(config, "CONFIG_SCHEDSTATS"),
        modules_dir=str(modules_dir) if modules_dir else None,
    )
