"""Fetch a newer QEMU from Debian's backports into ktstr's cache.

Debian 12's QEMU (7.2) cannot run a guest with more than 255 APIC IDs
under TCG, and its multi-threaded TCG sometimes executes a stale
``int3`` after the guest live-patches its code.  bookworm-backports
carries QEMU 10, built against bookworm's own libraries: it needs only
libraries that bookworm's ``qemu-system-x86`` already pulls in, so
ktstr fetches three packages and nothing else:

- ``qemu-system-x86`` (the ``qemu-system-x86_64`` binary),
- ``qemu-system-data`` (option ROMs: ``pvh.bin``, ``linuxboot_dma.bin``,
  ``kvmvapic.bin``),
- ``seabios`` (``bios-256k.bin``; QEMU 10 wants a newer one than bookworm's).

As with kernels (:mod:`ktstr.kernel.debian`) the machine's apt
configuration is only read, for its mirror: the packages come through a
private apt state directory, each checked against the index's SHA256,
and are unpacked with ``dpkg-deb -x`` under
``<cache>/qemu/<upstream version>-<content key>/``.  The content key is
a hash of the packages' SHA256s, so a rebuilt package lands in a new
entry and an entry never mixes files of two builds.

The Debian binary is not relocatable: it looks for firmware in
``/usr/share/qemu`` and ``/usr/share/seabios`` whatever its own path, so
a cached QEMU must be started with ``-L`` for both unpacked directories
(:meth:`CachedQemu.argv_prefix`); ``-L`` directories are searched before
the built-in ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ktstr import paths
from ktstr.errors import EnvironmentProblem, FetchError
from ktstr.kernel import debian

log = logging.getLogger(__name__)

SUITE = "bookworm-backports"
BINARY_PACKAGE = "qemu-system-x86"
# Packages taken from the suite, in unpack order.  Libraries are not among
# them: every library the backported binary needs is in bookworm at the
# version it asks for (the host's qemu-system-x86 7.2 already pulls them in).
PACKAGES = (BINARY_PACKAGE, "qemu-system-data", "seabios")
BINARY = "usr/bin/qemu-system-x86_64"
FIRMWARE_DIRS = ("usr/share/qemu", "usr/share/seabios")
# Kept from the unpacked tree; the rest (man pages, i386 and microvm binaries,
# docs, icons) is dropped.
KEEP = (BINARY, *FIRMWARE_DIRS)
META = "meta.json"


def qemu_root() -> Path:
    return paths.cache_dir() / "qemu"


def upstream_version(debian_version: str) -> str:
    """QEMU's own version from a Debian one: ``1:10.0.2+ds-2+deb13u1~bpo12+1`` -> ``10.0.2``."""
    version = debian_version.partition(":")[2] or debian_version
    match = re.match(r"\d+(?:\.\d+)*", version)
    if not match:
        raise FetchError(
            f"cannot read a QEMU version out of {debian_version!r}", "check the --suite"
        )
    return match.group(0)


def version_key(version: str) -> tuple[int, ...]:
    """``10.0.2`` -> (10, 0, 2), for picking the newest cached QEMU."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def content_key(hashes: dict[str, str]) -> str:
    """One hash over the packages' names and SHA256s, independent of their order."""
    text = "".join(f"{name} {digest}\n" for name, digest in sorted(hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def entry_name(debian_version: str, hashes: dict[str, str]) -> str:
    return f"{upstream_version(debian_version)}-{content_key(hashes)[:16]}"


def check_companions(binary_fields: dict[str, str], packages: dict[str, dict[str, str]]) -> None:
    """Every package ``PACKAGES`` takes besides the binary is one its Depends names.

    A suite whose qemu-system-x86 stopped depending on one of them (a rename,
    a split) would otherwise be fetched incomplete or mixed.
    """
    named = set(debian.depends_names(binary_fields.get("Depends", "")))
    for package in PACKAGES[1:]:
        if package not in named:
            raise FetchError(
                f"{BINARY_PACKAGE} {binary_fields.get('Version', '?')} does not depend on "
                f"{package}, so ktstr does not know which firmware it needs",
                "use the system QEMU, or report this with the suite name",
            )
        if package not in packages:
            raise FetchError(f"{package} is not in the suite", "check the --suite")


def max_apic_id(sockets: int, cores: int, threads: int) -> int:
    """The highest APIC ID QEMU gives a ``-smp`` layout (one die, one module per socket).

    Each level takes ``ceil(log2(count))`` bits, threads lowest: 14 sockets
    of 9 cores of 2 threads reach 433.  Above 255 the guest needs x2APIC,
    which QEMU 7.2 refuses under TCG and QEMU 10 gives only with an IOMMU
    doing interrupt remapping (``-M q35 -device intel-iommu,intremap=on,eim=on``).
    """
    thread_bits = (threads - 1).bit_length()
    core_bits = (cores - 1).bit_length()
    return (
        ((sockets - 1) << (core_bits + thread_bits)) | ((cores - 1) << thread_bits) | (threads - 1)
    )


def parse_version_output(text: str) -> str | None:
    """The version in ``qemu-system-x86_64 --version`` output."""
    match = re.search(r"version (\d+(?:\.\d+)*)", text)
    return match.group(1) if match else None


def missing_depends(depends: str, installed: set[str]) -> list[str]:
    """Packages of a Depends field (first alternatives) that are not installed,
    leaving out the ones ktstr fetches itself."""
    return [
        name
        for name in debian.depends_names(depends)
        if name not in installed and name not in PACKAGES and not name.startswith("qemu-")
    ]


@dataclass(frozen=True)
class CachedQemu:
    """An unpacked QEMU under the cache, and how to start it."""

    root: Path
    version: str

    @property
    def binary(self) -> Path:
        return self.root / BINARY

    def argv_prefix(self) -> list[str]:
        """The binary and the ``-L`` options its firmware needs (argv[0] onward)."""
        argv = [str(self.binary)]
        for d in FIRMWARE_DIRS:
            argv += ["-L", str(self.root / d)]
        return argv

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment to start it with: ``LD_LIBRARY_PATH`` gains ``<entry>/lib``
        only if an entry ever carries private libraries (none from bookworm-backports)."""
        env = dict(os.environ if base is None else base)
        private = self.root / "lib"
        if private.is_dir():
            env["LD_LIBRARY_PATH"] = ":".join(
                p for p in (str(private), env.get("LD_LIBRARY_PATH", "")) if p
            )
        return env


def read_entry(entry: Path) -> CachedQemu | None:
    """A complete cached entry (meta.json, binary, firmware), else None."""
    try:
        meta = json.loads((entry / META).read_text())
        version = meta["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = CachedQemu(entry, str(version))
    if not found.binary.is_file() or not all((entry / d).is_dir() for d in FIRMWARE_DIRS):
        return None
    return found


def newest_cached(root: Path | None = None) -> CachedQemu | None:
    """The newest complete QEMU in the cache, or None (nothing is downloaded)."""
    root = root or qemu_root()
    if not root.is_dir():
        return None
    entries = [
        e for e in (read_entry(p) for p in root.iterdir() if not p.name.startswith(".")) if e
    ]
    if not entries:
        return None
    return max(entries, key=lambda e: (version_key(e.version), e.root.name))


def _installed_packages() -> set[str]:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        name
        for name, _, status in (line.partition(" ") for line in proc.stdout.splitlines())
        if status == "installed"
    }


def _prune(tree: Path, staged: Path) -> None:
    for rel in KEEP:
        src = tree / rel
        if not src.exists():
            raise FetchError(f"the unpacked packages hold no {rel}", "retry the fetch")
        dest = staged / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)


def _verify(found: CachedQemu, depends: str) -> None:
    """Run ``--version``; a library missing on the host is one sentence with the fix."""
    from ktstr.initramfs import elfdeps

    try:
        elfdeps.closure([found.binary])
    except elfdeps.MissingLibrary as err:
        missing = missing_depends(depends, _installed_packages())
        fix = (
            f"install them with: sudo apt-get install {' '.join(missing)}"
            if missing
            else "install bookworm's qemu-system-x86, which pulls in the same libraries"
        )
        raise EnvironmentProblem(
            f"QEMU {found.version} from the cache cannot start: {err.cause}", fix
        ) from None
    proc = subprocess.run(
        [*found.argv_prefix(), "--version"],
        capture_output=True,
        text=True,
        env=found.env(),
        check=False,
    )
    got = parse_version_output(proc.stdout)
    if proc.returncode != 0 or got != found.version:
        last = (proc.stderr.strip().splitlines() or [proc.stdout.strip() or "no output"])[-1]
        raise FetchError(
            f"the fetched QEMU does not run ({last})", "remove the entry and fetch again"
        )


@dataclass
class Fetched:
    qemu: CachedQemu
    cached: bool  # True when it was already there


def fetch(suite: str = SUITE, mirror: str | None = None, force: bool = False) -> Fetched:
    """Download, verify and unpack QEMU from ``suite`` into the cache."""
    mirror = mirror or os.environ.get("KTSTR_MIRROR") or debian.apt_mirror()
    if not mirror:
        raise FetchError(
            "this machine's apt configuration names no Debian mirror",
            "pass --mirror URL (a Debian archive such as https://<host>/debian)",
        )
    apt = debian.PrivateApt(mirror.rstrip("/"), suite, paths.cache_dir() / "apt" / suite)
    apt.update()
    fields = {package: apt.show(package) for package in PACKAGES}
    binary_fields = fields[BINARY_PACKAGE]
    check_companions(binary_fields, fields)
    hashes = {}
    for package, f in fields.items():
        if not f.get("SHA256"):
            raise FetchError(f"the apt index has no SHA256 for {package}", "retry the fetch")
        hashes[package] = f["SHA256"]
    root = qemu_root()
    entry = root / entry_name(binary_fields["Version"], hashes)
    existing = read_entry(entry)
    if existing and not force:
        return Fetched(existing, cached=True)
    work = root / f".fetch-{entry.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        debs = work / "debs"
        debs.mkdir(parents=True)
        for package in PACKAGES:
            deb = apt.download(package, debs, fields[package]["Version"])
            debian.unpack(deb, work / "tree")
        staged = work / "entry"
        _prune(work / "tree", staged)
        version = upstream_version(binary_fields["Version"])
        _verify(CachedQemu(staged, version), binary_fields.get("Depends", ""))
        debian.install(
            staged,
            entry,
            {
                "version": version,
                "suite": suite,
                "mirror": mirror,
                "packages": {p: fields[p]["Version"] for p in PACKAGES},
                "sha256": hashes,
                "content_key": content_key(hashes),
            },
            META,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Fetched(CachedQemu(entry, version), cached=False)
