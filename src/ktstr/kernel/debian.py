"""Fetch Debian's sched_ext kernel through a private apt state directory.

The machine's apt configuration is only read (for its mirror), never
changed: ktstr keeps its own sources list, package lists and downloads
under the cache.  Package names carry the kernel version, so they are
resolved through the meta package (``linux-image-cloud-amd64``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ktstr import paths
from ktstr.errors import EnvironmentProblem, FetchError
from ktstr.kernel import payload

log = logging.getLogger(__name__)

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
FLAVOURS = {"cloud": "linux-image-cloud-amd64", "generic": "linux-image-amd64"}
# One-line sources.list entries; python-debian parses the deb822 form but not this one.
_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", re.M)


def _debian_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://")) and uri.rstrip("/").endswith("/debian")


def apt_mirror(etc: Path = Path("/etc/apt")) -> str | None:
    """The Debian archive mirror this machine's apt already uses, if any."""
    from debian.deb822 import Deb822

    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            uris = [p.get("URIs", "") for p in Deb822.iter_paragraphs(text.splitlines())]
        else:
            uris = [m.group(1) for m in _ONE_LINE.finditer(text)]
        for uri in " ".join(uris).split():
            if _debian_uri(uri):
                return uri.rstrip("/")
    return None


def parse_stanza(text: str) -> dict[str, str]:
    """The first stanza of ``apt-cache show`` output; continuation lines joined by newlines."""
    from debian.deb822 import Deb822

    return {
        key: "\n".join(line.strip() for line in value.splitlines())
        for key, value in Deb822(text.splitlines()).items()
    }


def depends_names(depends: str) -> list[str]:
    """Package names in a Depends field (first alternative of each)."""
    from debian.deb822 import PkgRelation

    return [alts[0]["name"] for alts in PkgRelation.parse_relations(depends) if alts]


def sha256_file(path: Path) -> str:
    """SHA256 of a file, read in chunks (a linux-source .deb is 150 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def deb_name(fields: dict[str, str]) -> str:
    """The file name apt-get download gives a package: name_version_arch.deb, epoch escaped."""
    version = fields["Version"].replace(":", "%3a")
    return f"{fields['Package']}_{version}_{fields.get('Architecture', 'amd64')}.deb"


class PrivateApt:
    """apt-get and apt-cache pointed at ktstr's own state directory for one suite."""

    def __init__(self, mirror: str, suite: str, root: Path) -> None:
        self.mirror, self.suite, self.root = mirror, suite, root
        for d in ("lists/partial", "cache/archives/partial", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
        (root / "etc/sources.list").write_text(f"deb {signed}{mirror} {suite} main\n")
        (root / "status").touch()

    def _options(self) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": self.root / "etc/sources.list",
            "Dir::Etc::SourceParts": "/dev/null",
            "Dir::State::Lists": self.root / "lists",
            "Dir::State::status": self.root / "status",
            "Dir::Cache": self.root / "cache",
            "Debug::NoLocking": "1",
        }
        if os.geteuid() == 0:
            opts["APT::Sandbox::User"] = "root"
        return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        if not shutil.which(tool):
            raise EnvironmentProblem(
                f"{tool} is not installed, so Debian packages cannot be fetched here",
                f"install it with: sudo apt-get install {paths.TOOL_PACKAGES[tool]}, "
                "or pass your own kernel with --kernel PATH",
            )
        proc = subprocess.run(
            [tool, *self._options(), *args], capture_output=True, text=True, cwd=cwd, check=False
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(
                f"'{tool} {' '.join(args)}' failed for {self.mirror} {self.suite}: {last}",
                "check the network and the mirror, or pass --mirror URL",
            )
        return proc.stdout

    def update(self) -> None:
        self._run("apt-get", "-q", "update")

    def show(self, package: str) -> dict[str, str]:
        out = self._run("apt-cache", "show", package)
        fields = parse_stanza(out)
        if not fields:
            raise FetchError(f"package {package} is not in {self.suite}", "check --suite/--flavour")
        return fields

    def download(self, package: str, dest: Path, version: str | None = None) -> Path:
        """The package's .deb in ``dest``, checked against the index's SHA256.

        A file already there is used only if its hash matches the index;
        otherwise it is downloaded again.  The file is named from the index
        (never found by a glob), so a stale or foreign .deb is never picked.
        """
        fields = self.show(f"{package}={version}" if version else package)
        expected = fields.get("SHA256")
        if not expected:
            raise FetchError(f"the apt index has no SHA256 for {package}", "retry the fetch")
        path = dest / deb_name(fields)
        if path.is_file():
            if sha256_file(path) == expected:
                return path
            log.info("%s does not match the apt index; downloading it again", path)
            path.unlink()
        self._run("apt-get", "-q", "download", f"{package}={fields['Version']}", cwd=dest)
        if not path.is_file():
            raise FetchError(f"apt-get did not leave {path.name} in {dest}", "retry the fetch")
        digest = sha256_file(path)
        if digest != expected:
            path.unlink()
            raise FetchError(
                f"{path.name} does not match the apt index (sha256 {digest})",
                "retry the fetch; if it persists the mirror is serving a bad file",
            )
        return path


@dataclass
class Fetched:
    release: str
    entry: Path
    cached: bool  # True when it was already there


def _kernel_packages(apt: PrivateApt, flavour: str) -> tuple[str, list[str]]:
    """(release, packages) for the flavour's meta package in this suite."""
    meta = FLAVOURS[flavour]
    image = next(
        (
            n
            for n in depends_names(apt.show(meta).get("Depends", ""))
            if n.startswith("linux-image-") and n != meta
        ),
        None,
    )
    if image is None:
        raise FetchError(f"{meta} names no versioned kernel image", "try another --suite")
    release = image.removeprefix("linux-image-")
    wanted = [image]
    for dep in depends_names(apt.show(image).get("Depends", "")):
        if re.fullmatch(rf"linux-(binary|modules|base)-{re.escape(release)}", dep):
            wanted.append(dep)
    return release, wanted


def _first(root: Path, *patterns: str) -> Path | None:
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    return None


def assemble(tree: Path, release: str, entry: Path) -> None:
    """Pick vmlinuz, config, System.map and modules out of unpacked packages."""
    entry.mkdir(parents=True)
    mod = f"lib/modules/{release}"
    vmlinuz = _first(tree, f"usr/{mod}/vmlinuz", f"boot/vmlinuz-{release}")
    if vmlinuz is None:
        raise FetchError(f"the packages of {release} hold no vmlinuz", "try another --flavour")
    shutil.copy2(vmlinuz, entry / "vmlinuz")
    for name, patterns in {
        "config": (f"usr/{mod}/config", f"boot/config-{release}"),
        "System.map": (f"usr/{mod}/System.map", f"boot/System.map-{release}"),
    }.items():
        found = _first(tree, *patterns)
        if found:
            shutil.copy2(found, entry / name)
    modules = _first(tree, f"usr/{mod}", mod)
    if modules and (modules / "kernel").is_dir():
        shutil.copytree(
            modules,
            entry / "modules",
            symlinks=True,
            ignore=shutil.ignore_patterns("vmlinuz", "config", "System.map"),
        )
    data = (entry / "vmlinuz").read_bytes()
    try:
        (entry / "vmlinux").write_bytes(payload.extract_vmlinux(data))
    except payload.PayloadError as err:
        log.warning(
            "no ELF vmlinux extracted from %s (%s); it will boot as a bzImage", release, err
        )


def install(staged: Path, entry: Path, meta: dict, name: str = "meta.json") -> None:
    """Finish a fetched cache entry: its record (with when it was fetched) written into
    ``staged``, then ``staged`` swapped in for ``entry`` so a reader never sees half."""
    fetched = {**meta, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (staged / name).write_text(json.dumps(fetched, indent=2) + "\n")
    if entry.exists():
        shutil.rmtree(entry)
    os.replace(staged, entry)


def unpack(deb: Path, tree: Path) -> None:
    """``dpkg-deb -x``, with a missing dpkg-deb or a failure said in one sentence."""
    dpkg_deb = paths.host_tool("dpkg-deb", "unpacking Debian packages")
    proc = subprocess.run(
        [dpkg_deb, "-x", str(deb), str(tree)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"dpkg-deb could not unpack {deb.name}: {last}", "retry the fetch")


def private_apt(suite: str, mirror: str | None = None) -> tuple[PrivateApt, str]:
    """ktstr's apt state for ``suite`` and the mirror it reads (given, $KTSTR_MIRROR, or
    the machine's own)."""
    mirror = mirror or os.environ.get("KTSTR_MIRROR") or apt_mirror()
    if not mirror:
        raise FetchError(
            "this machine's apt configuration names no Debian mirror",
            "pass --mirror URL (a Debian archive such as https://<host>/debian)",
        )
    return PrivateApt(mirror.rstrip("/"), suite, paths.cache_dir() / "apt" / suite), mirror


def fetch(
    flavour: str = "cloud", suite: str = "unstable", mirror: str | None = None, force: bool = False
) -> Fetched:
    """Download and unpack the suite's kernel for ``flavour`` into the cache."""
    if flavour not in FLAVOURS:
        raise FetchError(f"unknown flavour {flavour!r}", f"use one of {', '.join(FLAVOURS)}")
    apt, mirror = private_apt(suite, mirror)
    apt.update()
    release, packages = _kernel_packages(apt, flavour)
    root = paths.kernels_dir()
    entry = root / release
    if (entry / "meta.json").is_file() and not force:
        return Fetched(release, entry, cached=True)
    work = root / f".fetch-{release}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        debs = work / "debs"
        debs.mkdir(parents=True)
        versions = {}
        for package in packages:
            deb = apt.download(package, debs)
            versions[package] = deb.name
            unpack(deb, work / "tree")
        staged = work / "entry"
        assemble(work / "tree", release, staged)
        install(
            staged,
            entry,
            {
                "release": release,
                "flavour": flavour,
                "suite": suite,
                "mirror": mirror,
                "packages": versions,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Fetched(release, entry, cached=False)
