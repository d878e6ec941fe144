"""A deterministic writer (and a reader, for tests) of the newc cpio format.

The kernel unpacks newc archives into its rootfs, and accepts several
concatenated ones, which is how a per-run archive is layered on top of
the cached base.  Entries are written sorted, with fixed owners and
mtimes, so equal inputs give byte-identical archives.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    path: str  # relative, no leading slash
    mode: int  # full st_mode (type bits included)
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) for device nodes


def _norm(path: str) -> str:
    clean = str(PurePosixPath("/", path)).lstrip("/")
    if not clean or clean == ".":
        raise ValueError(f"bad archive path {path!r}")
    return clean


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, entry: Entry, nlink: int, namesize: int) -> bytes:
    major, minor = entry.rdev
    fields = [ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, major, minor, namesize, 0]
    return MAGIC + b"".join(f"{v:08x}".encode() for v in fields)


class Archive:
    """An in-memory set of entries; parents are created as directories."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents):
            key = str(parent)
            if key != "." and key not in self._entries:
                self._entries[key] = Entry(key, stat.S_IFDIR | 0o755)

    def add_dir(self, path: str, perm: int = 0o755) -> None:
        path = _norm(path)
        self._parents(path)
        self._entries[path] = Entry(path, stat.S_IFDIR | perm)

    def add_file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        path = _norm(path)
        self._parents(path)
        self._entries[path] = Entry(path, stat.S_IFREG | perm, data)

    def add_symlink(self, path: str, target: str) -> None:
        path = _norm(path)
        self._parents(path)
        self._entries[path] = Entry(path, stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        path = _norm(path)
        self._parents(path)
        self._entries[path] = Entry(path, stat.S_IFCHR | perm, b"", (major, minor))

    def write(self, out: BinaryIO) -> int:
        """Write the archive (sorted, trailer included); return its size."""
        written = 0
        entries = [self._entries[k] for k in sorted(self._entries)]
        entries.append(Entry(TRAILER, 0))
        for ino, entry in enumerate(entries, start=1):
            name = entry.path.encode() + b"\0"
            nlink = 2 if stat.S_ISDIR(entry.mode) else 1
            if entry.path == TRAILER:
                ino, nlink = 0, 1
            head = _header(ino, entry, nlink, len(name)) + name
            chunk = head + _pad(len(head)) + entry.data + _pad(len(entry.data))
            out.write(chunk)
            written += len(chunk)
        return written


def read(data: bytes) -> Iterator[Entry]:
    """Yield the entries of one or more concatenated newc archives."""
    pos = 0
    while pos < len(data):
        if data[pos : pos + 6] != MAGIC:
            if not data[pos:].strip(b"\0"):
                return
            raise ValueError(f"bad cpio magic at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize, rdev = fields[1], fields[6], fields[11], (fields[9], fields[10])
        pos += 110
        name = data[pos : pos + namesize - 1].decode()
        pos += namesize + (-(110 + namesize) % 4)
        body = data[pos : pos + size]
        pos += size + (-size % 4)
        if name != TRAILER:
            yield Entry(name, mode, body, rdev)
