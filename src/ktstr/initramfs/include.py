"""Host files and directories a test takes into the guest, under ``/include-files/<name>``.

They go in an archive of their own, cached by content, after the base
image (which stays shared); a run that includes nothing reads nothing.
Every path is checked before anything boots: a missing one, or two that
would land on the same guest path, is one sentence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ktstr.errors import ConfigError
from ktstr.initramfs import cached

GUEST_ROOT = "/include-files"


def guest_path(host: str | os.PathLike[str]) -> str:
    """Where a file or directory lands in the guest: ``/include-files/<its name>``."""
    return f"{GUEST_ROOT}/{Path(host).resolve().name}"


def check(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Path]:
    """Guest path -> host path for each include; refuses missing paths and clashes.

    The same host path given twice is taken once.
    """
    chosen: dict[str, Path] = {}
    for given in paths:
        host = Path(given).expanduser()
        if not host.exists():
            raise ConfigError(
                f"include path {given} does not exist", "give an existing file or directory"
            )
        if not (host.is_file() or host.is_dir()):
            raise ConfigError(
                f"include path {given} is neither a file nor a directory",
                "include regular files or directories",
            )
        guest = guest_path(host)
        earlier = chosen.get(guest)
        if earlier is not None and earlier.resolve() != host.resolve():
            raise ConfigError(
                f"{earlier} and {given} would both be {guest} in the guest",
                "rename one of them, or include their parent directories instead",
            )
        chosen[guest] = host
    return chosen


def pack(paths: Iterable[str | os.PathLike[str]]) -> dict[str, bytes]:
    """Guest file path -> contents, for every file under every include.

    Symlinks to files are read through; symlinked directories are not entered (no cycles).
    """
    files: dict[str, bytes] = {}
    for guest, host in check(paths).items():
        if host.is_file():
            files[guest] = _read(host)
            continue
        for root, _dirs, names in os.walk(host):
            for name in sorted(names):
                path = Path(root, name)
                if path.is_file():  # sockets, fifos and dangling links carry no content
                    files[f"{guest}/{path.relative_to(host).as_posix()}"] = _read(path)
    return files


def archive(files: dict[str, bytes]) -> Path | None:
    """Packed includes as an archive cached by content: a run that includes the same
    bytes again reuses it.  None when there are none."""
    if not files:
        return None
    return cached.archive("include", {guest: (data, 0o755) for guest, data in files.items()})


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"include file {path} cannot be read ({err.strerror})", "make it readable"
        ) from None
