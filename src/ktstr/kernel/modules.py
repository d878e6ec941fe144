"""Kernel modules the guest needs (virtio_blk for disks), packed uncompressed.

Debian builds some drivers as modules and compresses them; the guest has
no modprobe and no decompressor, so the host finds a module and its
dependencies (from each module's ``depends=`` modinfo field), decompresses
them, and the agent loads them in order with ``finit_module``.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from pathlib import Path

from ktstr.errors import KernelError
from ktstr.kernel.image import KernelInfo, parse_config

GUEST_MODULE_DIR = "/ktstr/modules"
_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz", ".ko.bz2")
_DEPENDS = re.compile(rb"(?:^|\0)depends=([^\0]*)\0")


def config_value(info: KernelInfo, option: str) -> str | None:
    """``y``, ``m`` or None (unset); None also when the kernel has no known config."""
    if not info.config_path:
        return None
    return parse_config(Path(info.config_path).read_text(errors="replace")).get(option)


def _decompress(path: Path) -> bytes:
    data = path.read_bytes()
    name = path.name
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".bz2"):
        return bz2.decompress(data)
    if name.endswith(".zst"):
        raise KernelError(
            f"{path} is zstd-compressed, which this Python cannot decompress",
            "build the kernel with CONFIG_MODULE_COMPRESS_XZ or uncompressed modules",
        )
    return data


def _index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> file."""
    out: dict[str, Path] = {}
    for path in (modules_dir / "kernel").rglob("*.ko*"):
        for suffix in _SUFFIXES:
            if path.name.endswith(suffix):
                out[path.name[: -len(suffix)].replace("-", "_")] = path
    return out


def module_closure(info: KernelInfo, name: str) -> list[tuple[str, bytes]]:
    """``name`` and what it depends on, dependencies first, as (module, ELF bytes)."""
    if not info.modules_dir:
        raise KernelError(
            f"kernel {info.release} builds {name} as a module but ktstr has no modules for it",
            "build the kernel with the driver built in (=y), or use 'ktstr kernel fetch'",
        )
    index = _index(Path(info.modules_dir))
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(mod: str) -> None:
        if mod in seen:
            return
        seen.add(mod)
        if mod not in index:
            raise KernelError(
                f"module {mod} is missing from {info.modules_dir}",
                "re-fetch the kernel with 'ktstr kernel fetch'",
            )
        data = _decompress(index[mod])
        match = _DEPENDS.search(data)
        for dep in match.group(1).decode().split(",") if match else []:
            if dep:
                visit(dep.replace("-", "_"))
        ordered.append((mod, data))

    visit(name)
    return ordered


def guest_modules(info: KernelInfo, option: str, name: str) -> tuple[list[str], dict[str, bytes]]:
    """What the guest must load for ``option``: (guest paths in load order, files to pack).

    Nothing when the option is built in; a clear error when it is off.
    """
    value = config_value(info, option)
    if value == "y" or (value is None and not info.config_path):
        return [], {}
    if value != "m":
        raise KernelError(
            f"kernel {info.release} has {option} off, so the guest cannot see the disks",
            f"build it with {option}=y or =m",
        )
    order, files = [], {}
    for mod, data in module_closure(info, name):
        path = f"{GUEST_MODULE_DIR}/{mod}.ko"
        order.append(path)
        files[path] = data
    return order, files
