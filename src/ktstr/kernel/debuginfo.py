"""The kernel's DWARF, which the host-side monitor needs to read guest memory.

drgn finds kernel types and variables only in DWARF (it has no BTF type
finder), and Debian ships that in ``linux-image-<release>-dbg``: a 350 MB
download that unpacks to ~2 GB, nearly all of it module debug info the
monitor never reads.  So only the vmlinux debug file is taken out of the
package, streamed from ``dpkg-deb --fsys-tarfile``, and cached by release
under ``<cache>/debug/<release>/vmlinux``.  A user-built kernel whose
vmlinux carries DWARF is used as it is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ktstr import paths
from ktstr.errors import FetchError, KernelError
from ktstr.kernel import debian

log = logging.getLogger(__name__)

FETCH_DEBUG_HINT = "run 'ktstr kernel fetch --debug' to download it"
# Where Debian's -dbg packages have put the vmlinux debug file, newest layout first.
_MEMBERS = ("usr/lib/debug/boot/vmlinux-{r}", "usr/lib/debug/lib/modules/{r}/vmlinux")


def debug_dir() -> Path:
    return paths.cache_dir() / "debug"


def build_id(path: Path) -> str | None:
    """The ELF's GNU build id (hex), or None when it has none or is not an ELF.

    Both the boot vmlinux and its debug file carry the same id, so it tells
    whether debug info belongs to the kernel a VM runs.
    """
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            sources = [s for s in elf.iter_sections() if s.header.sh_type == "SHT_NOTE"]
            sources += [s for s in elf.iter_segments() if s.header.p_type == "PT_NOTE"]
            for source in sources:
                for note in source.iter_notes():
                    # pyelftools names note types by number whatever the owner: a Xen
                    # note of type 3 also reads as NT_GNU_BUILD_ID.
                    if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                        return str(note["n_desc"])
    except (ELFError, OSError, ValueError):
        return None
    return None


def has_dwarf(path: Path) -> bool:
    """Whether the ELF has a non-empty ``.debug_info`` (a user's own build usually does)."""
    try:
        with open(path, "rb") as f:
            section = ELFFile(f).get_section_by_name(".debug_info")
            return section is not None and section.header.sh_type != "SHT_NOBITS"
    except (ELFError, OSError):
        return False


def package_name(release: str) -> str:
    return f"linux-image-{release}-dbg"


@dataclass
class DebugInfo:
    """A vmlinux with DWARF for one kernel, and where it came from."""

    path: Path
    build_id: str | None
    source: str  # "cache" (fetched -dbg package) or "vmlinux" (the kernel's own)


def cached(release: str) -> Path | None:
    """The cached debug vmlinux for ``release``, if a finished entry is there."""
    entry = debug_dir() / release
    if (entry / "meta.json").is_file() and (entry / "vmlinux").is_file():
        return entry / "vmlinux"
    return None


def check_match(debug: Path, kernel_image: Path) -> None:
    """Refuse debug info built for another kernel: the build ids must be equal.

    Mismatched DWARF would put every variable at a wrong address, and the
    monitor would read plausible garbage rather than fail.
    """
    want, have = build_id(kernel_image), build_id(debug)
    if want and have and want != have:
        raise KernelError(
            f"the debug info {debug} is for another build of the kernel (build id {have}, "
            f"the kernel {kernel_image} has {want})",
            "fetch it again with 'ktstr kernel fetch --debug --force'",
        )


def find(release: str, kernel_image: Path) -> DebugInfo:
    """Debug info for the kernel at ``kernel_image``: its own DWARF, else the cache.

    Without either, one sentence naming what is missing and the command
    that gets it.
    """
    if has_dwarf(kernel_image):
        return DebugInfo(kernel_image, build_id(kernel_image), "vmlinux")
    path = cached(release)
    if path is None:
        raise KernelError(
            f"kernel {release} has no debug info (its vmlinux has no DWARF and "
            f"{package_name(release)} is not cached), so the monitor cannot read its memory",
            f"{FETCH_DEBUG_HINT} (for a kernel you built, boot its vmlinux built with "
            "CONFIG_DEBUG_INFO)",
        )
    check_match(path, kernel_image)
    return DebugInfo(path, build_id(path), "cache")


def extract_vmlinux(deb: Path, release: str, dest: Path) -> str:
    """Stream the package's vmlinux debug file into ``dest``; return the member's name.

    Only the one member is written: ``dpkg-deb --fsys-tarfile`` feeds a tar
    reader that skips every other member (the module debug files never
    reach the disk), and stops reading once it has the file.
    """
    dpkg_deb = paths.host_tool("dpkg-deb", "unpacking the kernel's debug package")
    wanted = {m.format(r=release) for m in _MEMBERS}
    proc = subprocess.Popen(
        [dpkg_deb, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    found = None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.removeprefix("./") in wanted:
                    src = tar.extractfile(member)
                    assert src is not None  # a regular file always has data
                    with open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    found = member.name
                    break
    except tarfile.TarError as err:
        raise FetchError(
            f"{deb.name} is not a readable package ({err})", "retry the fetch"
        ) from None
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    if found is None:
        raise FetchError(
            f"{deb.name} holds no vmlinux debug file (looked for {', '.join(sorted(wanted))})",
            "check that the package is the kernel's -dbg package",
        )
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Fetched:
    release: str
    path: Path
    cached: bool
    download_bytes: int  # the package's size from the index (0 when already cached)


def fetch(
    release: str,
    kernel_image: Path,
    suite: str = "unstable",
    mirror: str | None = None,
    force: bool = False,
) -> Fetched:
    """Download ``linux-image-<release>-dbg``, keep only its vmlinux, cache it by release.

    The package is checked against the apt index's SHA256, the extracted
    file against the kernel's build id; the entry appears at once (staged,
    then renamed) and nothing is left behind when a step fails.
    """
    entry = debug_dir() / release
    if cached(release) and not force:
        check_match(entry / "vmlinux", kernel_image)
        return Fetched(release, entry / "vmlinux", cached=True, download_bytes=0)
    apt, mirror = debian.private_apt(suite, mirror)
    apt.update()
    package = package_name(release)
    try:
        fields = apt.show(package)
    except FetchError:
        raise FetchError(
            f"{package} is not in {suite} on {mirror}, so kernel {release} has no debug info "
            "to fetch",
            "pass --suite for the suite the kernel came from, or build the kernel with "
            "CONFIG_DEBUG_INFO and pass its vmlinux",
        ) from None
    size = int(fields.get("Size", "0") or 0)
    log.info("downloading %s (%.0f MiB)", package, size / 2**20)
    debug_dir().mkdir(parents=True, exist_ok=True)
    work = debug_dir() / f".fetch-{release}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        deb = apt.download(package, work, fields["Version"])
        staged = work / "entry"
        staged.mkdir()
        member = extract_vmlinux(deb, release, staged / "vmlinux")
        deb.unlink()  # 350 MB: gone before the rename, whatever happens next
        check_match(staged / "vmlinux", kernel_image)
        debian.install(
            staged,
            entry,
            {
                "release": release,
                "package": debian.deb_name(fields),
                "package_sha256": fields.get("SHA256"),
                "package_bytes": size,
                "member": member,
                "build_id": build_id(staged / "vmlinux"),
                "sha256": _sha256(staged / "vmlinux"),
                "suite": suite,
                "mirror": mirror,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Fetched(release, entry / "vmlinux", cached=False, download_bytes=size)


def verify(release: str) -> None:
    """Re-hash a cached entry against its record (a truncated or edited file is refused)."""
    path = cached(release)
    if path is None:
        raise KernelError(f"no debug info for {release} is cached", FETCH_DEBUG_HINT)
    record = paths.json_record(
        path.parent / "meta.json",
        ("sha256",),
        "record 'ktstr kernel fetch --debug' wrote",
        "fetch it again with 'ktstr kernel fetch --debug --force'",
    )
    if _sha256(path) != record["sha256"]:
        raise KernelError(
            f"{path} does not match the hash recorded when it was fetched",
            "fetch it again with 'ktstr kernel fetch --debug --force'",
        )
