"""Find and parse the guest kernel's VMCOREINFO note in its physical memory.

The note is how crash tools learn a kernel's address layout: its KASLR
offset (``KERNELOFFSET``), page size, ``swapper_pg_dir`` and release.
Debian's kernels randomize the kernel's base, and ktstr's command line
does not turn that off, so the monitor needs these values before drgn
can translate a single kernel address.  The kernel keeps the note in a
page of its own (``vmcoreinfo_note``, what ``/sys/kernel/vmcoreinfo``
points at), so the host finds it by scanning guest RAM for the note
header, with no help from the guest; the attach then checks that the
kernel's own ``vmcoreinfo_note`` pointer names the page found, so a copy
planted by guest userspace is never trusted.
"""

from __future__ import annotations

import struct

from ktstr.errors import VmError

PAGE = 4096
NAME = b"VMCOREINFO\x00"
_NAME_PADDED = NAME + b"\x00"  # 11 bytes, padded to 4-byte alignment
# Elf64_Nhdr (namesz, descsz, type) + name; the text always starts with the release.
_HEADER = struct.Struct("<III")
NEEDLE = _NAME_PADDED + b"OSRELEASE="
MAX_BYTES = PAGE  # VMCOREINFO_BYTES
REQUIRED = ("OSRELEASE", "PAGESIZE", "KERNELOFFSET", "SYMBOL(swapper_pg_dir)")


def note_at(page: bytes) -> bytes | None:
    """The descriptor (the ``KEY=value`` text) of a VMCOREINFO note at the start of
    ``page``, or None when the bytes there are not one."""
    if len(page) < _HEADER.size + len(_NAME_PADDED):
        return None
    namesz, descsz, ntype = _HEADER.unpack_from(page)
    if namesz != len(NAME) or ntype != 0 or not 0 < descsz <= MAX_BYTES:
        return None
    start = _HEADER.size + len(_NAME_PADDED)
    if page[_HEADER.size : start] != _NAME_PADDED or start + descsz > len(page):
        return None
    return bytes(page[start : start + descsz])


def parse(desc: bytes) -> dict[str, str]:
    """``KEY=value`` lines -> dict; the text stops at the first NUL.

    Guest memory is untrusted: anything not printable ASCII is refused.
    """
    text = desc.split(b"\x00", 1)[0]
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("VMCOREINFO holds bytes that are not ASCII") from None
    fields: dict[str, str] = {}
    for line in decoded.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.isprintable() or not value.isprintable():
            raise ValueError(f"VMCOREINFO line {line[:60]!r} is not KEY=value")
        fields.setdefault(key, value)
    return fields


def check(fields: dict[str, str], release: str | None) -> None:
    """Refuse a note that lacks what drgn needs, or belongs to another kernel release."""
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise VmError(
            f"the guest kernel's VMCOREINFO lacks {', '.join(missing)}",
            "the monitor needs a kernel built with CONFIG_VMCORE_INFO (CONFIG_KEXEC or "
            "CONFIG_CRASH_DUMP selects it)",
        )
    if release and fields["OSRELEASE"] != release:
        raise VmError(
            f"the guest runs kernel {fields['OSRELEASE']!r}, not {release!r}",
            "attach with the kernel the VM was booted with",
        )


def kernel_offset(fields: dict[str, str]) -> int:
    """The KASLR offset of the kernel image (0 when randomization is off)."""
    return int(fields["KERNELOFFSET"], 16)
