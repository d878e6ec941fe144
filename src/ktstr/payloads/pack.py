"""A payload's program on the host, and the archive that carries it into the guest.

The program is found before anything boots (one sentence naming the Debian
package when it is missing); it goes into the guest with its shared
libraries (the ELF closure), in an archive cached by content.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ktstr.errors import ConfigError
from ktstr.initramfs import cached, elfdeps

GUEST_BIN = "/ktstr/payload/bin"


def guest_program(program: str) -> str:
    """Where a payload's program lands in the guest."""
    return f"{GUEST_BIN}/{Path(program).name}"


def find_program(entry: dict) -> Path:
    """The host file of a planned payload's program, or one sentence naming its package."""
    program, package = entry["program"], entry.get("package")
    found = shutil.which(program) if "/" not in program else program
    if not found or not os.access(found, os.X_OK) or not Path(found).is_file():
        fix = (
            f"install it with: sudo apt-get install {package}"
            if package
            else "install it, or give its path as the payload's program"
        )
        raise ConfigError(
            f"payload {entry['name']} needs {program}, which is not installed on this host", fix
        )
    real = Path(os.path.realpath(found))
    if not elfdeps.is_elf(real):
        raise ConfigError(
            f"payload {entry['name']}: {found} is not an ELF program (a script?), "
            "so it cannot be packed with its libraries",
            "give the path of the program it runs",
        )
    return real


def program_files(entries: list[dict]) -> tuple[dict[str, tuple[bytes, int]], str]:
    """Guest path -> (content, mode) for the plan's programs and their libraries; and
    their library directories, as the guest's loader needs them."""
    files: dict[str, tuple[bytes, int]] = {}
    hosts: dict[str, Path] = {}
    for entry in entries:
        host = find_program(entry)
        guest = guest_program(entry["program"])
        if hosts.setdefault(guest, host) != host:
            raise ConfigError(
                f"payload programs {hosts[guest]} and {host} would both be {guest} in the guest",
                "run only one of them, or copy one under another name",
            )
        files[guest] = (host.read_bytes(), 0o755)
    libs = elfdeps.closure(list(hosts.values()))
    for guest_lib, host_lib in libs.items():
        files[guest_lib] = (Path(host_lib).read_bytes(), 0o755)
    return files, ":".join(sorted({str(Path(p).parent) for p in libs}))


def archive(entries: list[dict]) -> tuple[Path | None, str]:
    """The cached archive with every planned payload's program, and their library path."""
    if not entries:
        return None, ""
    from ktstr.initramfs.image import strip_symbols

    files, lib_path = program_files(entries)
    prepare = lambda guest, data: strip_symbols(data) if ".so" in guest else data  # noqa: E731
    return cached.archive("payloads", files, prepare), lib_path
