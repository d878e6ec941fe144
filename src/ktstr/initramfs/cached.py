"""Extra archives cached by content: a payload's program and libraries, include files.

The kernel unpacks concatenated archives, so files a run adds to the
guest can live in their own archive, built once per content and reused
by every run that packs the same bytes.  A run that adds none costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ktstr import paths
from ktstr.initramfs.cpio import Archive

LAYOUT_VERSION = "1"


def key(files: dict[str, tuple[bytes, int]]) -> str:
    """A hash of every guest path, mode and content."""
    h = hashlib.sha256(LAYOUT_VERSION.encode())
    for guest, (data, mode) in sorted(files.items()):
        h.update(f"{guest}\0{mode:o}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def archive(
    prefix: str,
    files: dict[str, tuple[bytes, int]],
    prepare: Callable[[str, bytes], bytes] | None = None,
) -> Path:
    """The cached archive holding ``files`` (guest path -> (content, mode)), built if new.

    ``prepare`` (e.g. stripping libraries) runs only when the archive is built:
    the key is the content as given.
    """
    cache = paths.cache_dir() / "initramfs"
    target = cache / f"{prefix}-{key(files)}.cpio"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    built = Archive()
    for guest, (data, mode) in sorted(files.items()):
        built.add_file(guest, prepare(guest, data) if prepare else data, mode)
    tmp = target.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as out:
            built.write(out)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
