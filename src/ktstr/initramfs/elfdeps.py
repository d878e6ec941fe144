"""Find the shared libraries an ELF program needs, the way ld.so would.

The guest has no package manager: whatever a binary loads must be
packed next to it, at a path the dynamic loader searches.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from ktstr.errors import EnvironmentProblem

DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


class MissingLibrary(EnvironmentProblem, LookupError):
    """A DT_NEEDED entry no search path could satisfy: one sentence naming it and the fix."""

    def __init__(self, soname: str, needed_by: str | None = None) -> None:
        self.soname = soname
        by = f", which {needed_by} needs," if needed_by else ""
        super().__init__(
            f"the shared library {soname}{by} is not found on this host",
            f"install the package that provides {soname} (apt-file search {soname}), "
            "or add its directory to LD_LIBRARY_PATH",
        )


@dataclass
class ElfInfo:
    interp: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)


def is_elf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read_elf(path: str | Path) -> ElfInfo:
    """PT_INTERP, DT_NEEDED and the search paths of one ELF file."""
    info = ElfInfo()
    origin = str(Path(path).resolve().parent)
    with open(path, "rb") as f:
        try:
            elf = ELFFile(f)
        except ELFError as err:
            raise ValueError(f"{path} is not a readable ELF file: {err}") from None
        for seg in elf.iter_segments():
            if seg.header.p_type == "PT_INTERP":
                info.interp = seg.get_interp_name()
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    info.needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                    raw = tag.rpath if tag.entry.d_tag == "DT_RPATH" else tag.runpath
                    dirs = [
                        d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
                        for d in raw.split(":")
                        if d
                    ]
                    (info.rpath if tag.entry.d_tag == "DT_RPATH" else info.runpath).extend(dirs)
    return info


@lru_cache(maxsize=1)
def ld_cache() -> dict[str, str]:
    """soname -> path from the host's ld.so.cache (via ``ldconfig -p``)."""
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run(
                [ldconfig, "-p"], capture_output=True, text=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        table: dict[str, str] = {}
        for line in out.splitlines()[1:]:
            name, _, rest = line.strip().partition(" ")
            if "x86-64" not in rest and "64bit" not in rest:
                continue
            path = rest.rpartition("=> ")[2].strip()
            table.setdefault(name, path)
        return table
    return {}


def _find(soname: str, info: ElfInfo, env_dirs: list[str]) -> str:
    dirs = ([] if info.runpath else info.rpath) + env_dirs + info.runpath
    for d in dirs:
        candidate = os.path.join(d, soname)
        if os.path.exists(candidate):
            return candidate
    cached = ld_cache().get(soname)
    if cached and os.path.exists(cached):
        return cached
    for d in DEFAULT_DIRS:
        candidate = os.path.join(d, soname)
        if os.path.exists(candidate):
            return candidate
    raise MissingLibrary(soname)


def closure(binaries: list[str | Path]) -> dict[str, str]:
    """Guest path -> host file for every library (and loader) the binaries need.

    Each library keeps the directory it was found in and its soname, so
    the guest's loader finds it through ``LD_LIBRARY_PATH`` set to those
    directories; the loader itself keeps its exact PT_INTERP path.
    """
    env_dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    found: dict[str, str] = {}
    queue = [str(b) for b in binaries]
    seen: set[str] = set()
    while queue:
        current = queue.pop()
        real = os.path.realpath(current)
        if real in seen or not is_elf(real):
            continue
        seen.add(real)
        info = read_elf(real)
        if info.interp and info.interp not in found:
            found[info.interp] = os.path.realpath(info.interp)
            queue.append(info.interp)
        for soname in info.needed:
            try:
                path = _find(soname, info, env_dirs)
            except MissingLibrary:
                raise MissingLibrary(soname, current) from None
            guest = os.path.join(os.path.dirname(path), soname)
            if guest not in found:
                found[guest] = os.path.realpath(path)
                queue.append(path)
    return found
