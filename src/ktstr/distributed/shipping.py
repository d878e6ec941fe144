"""Host files a variant names, shipped with it to the workers: content-hashed, cached there.

A scheduler binary or config file named by path, ``--include`` files and a
scenario's ``include_files``, a user's scenario file (``file.py::NAME``)
and disk backing files live on the client's host, and the variant runs on
another.  Each travels as its bytes under the hash of its content and
lands once in the worker's cache under that hash; the worker then runs
the variant with the cached paths in place of the client's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ktstr import paths
from ktstr.disk import Disk
from ktstr.errors import ConfigError, QemuStartError
from ktstr.scenario.model import Scenario
from ktstr.scheduler import Scheduler
from ktstr.userfile import SEPARATOR, is_ref

# What one gauntlet may ship in all: Dask holds it in memory on both ends.
MAX_SHIPPED_BYTES = 2**30

# A shipment: the file's or directory's name, and a file's bytes or a directory's files
# by their path inside it.
Shipment = tuple[str, bytes | dict[str, bytes]]


def scenario_file(ref: str) -> str | None:
    """The host file a ``file.py::NAME`` reference names, or None for a catalog name."""
    return ref.partition(SEPARATOR)[0] if is_ref(ref) else None


def needed(
    scenarios: Iterable[Scenario | str],
    scheduler: Scheduler,
    include: Iterable[str],
    disks: tuple[Disk, ...] | None,
) -> list[str]:
    """Every host path the variants name, as named (a worker looks them up by that name).

    ``scenarios`` holds each scenario's reference (a user file is shipped) and its
    resolved Scenario (its include files, and its disks unless ``disks`` replaces them).
    """
    found: list[str] = []
    if scheduler.binary and "/" in scheduler.binary:  # by name: each worker finds or builds it
        found.append(scheduler.binary)
    found += [*scheduler.config_files(), *include]
    found += [d.backing for d in disks or () if d.backing]
    for item in scenarios:
        if isinstance(item, str):
            found += [f] if (f := scenario_file(item)) else []
            continue
        found += item.include_files
        if disks is None:
            found += [d.backing for d in item.disks if d.backing]
    return list(dict.fromkeys(found))


def pack(path: str) -> Shipment:
    """A host file's or directory's name and content (symlinked directories not entered)."""
    host = Path(path).expanduser()
    try:
        if host.is_file():
            return host.name, host.read_bytes()
        if host.is_dir():
            files = {}
            for root, _dirs, names in os.walk(host):
                for name in sorted(names):
                    if (file := Path(root, name)).is_file():
                        files[file.relative_to(host).as_posix()] = file.read_bytes()
            return host.resolve().name, files
    except OSError as err:
        raise ConfigError(f"{path} cannot be read ({err.strerror})", "make it readable") from None
    raise ConfigError(f"{path} does not exist on this host", "give an existing file or directory")


def digest(shipment: Shipment) -> str:
    """A file's SHA-256; a directory's covers each file's name and SHA-256."""
    _, content = shipment
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    outer = hashlib.sha256(b"dir\0")
    for name in sorted(content):
        outer.update(f"{name}\0{hashlib.sha256(content[name]).hexdigest()}\n".encode())
    return outer.hexdigest()


def size(shipment: Shipment) -> int:
    content = shipment[1]
    return len(content) if isinstance(content, bytes) else sum(map(len, content.values()))


def bundle(names: Iterable[str]) -> tuple[dict[str, str], dict[str, Shipment]]:
    """Each path -> its digest, and each digest's shipment; refuses too much in all."""
    index: dict[str, str] = {}
    shipments: dict[str, Shipment] = {}
    total = 0
    for name in names:
        shipment = pack(name)
        total += size(shipment)
        if total > MAX_SHIPPED_BYTES:
            raise ConfigError(
                f"the files these variants name add up to more than "
                f"{MAX_SHIPPED_BYTES // 2**20} MiB (at {name}), too much to ship to Dask workers",
                "use smaller files (a disk image: a smaller one, or none), or run without --dask",
            )
        index[name] = digest(shipment)
        shipments[index[name]] = shipment
    return index, shipments


_UNPACKING = threading.Lock()  # a worker with several threads writes each shipment once


def unpack(key: str, shipment: Shipment) -> Path:
    """The shipment in this host's cache under its digest (written once, then reused)."""
    name, content = shipment
    if digest(shipment) != key:
        raise QemuStartError(f"the shipped {name} arrived damaged (hash mismatch)")
    if PurePosixPath(name).name != name or name in ("", ".", ".."):
        raise ConfigError(f"the client sent a file named {name!r}", "upgrade ktstr on the client")
    path = paths.cache_dir() / "shipped" / key / name
    with _UNPACKING:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        try:
            if isinstance(content, bytes):
                tmp.write_bytes(content)
                tmp.chmod(0o755)  # a scheduler binary runs; the rest does not mind
            else:
                for rel, data in content.items():
                    inner = tmp / relative(rel, "the client", "upgrade ktstr on the client")
                    inner.parent.mkdir(parents=True, exist_ok=True)
                    inner.write_bytes(data)
                    inner.chmod(0o755)
                tmp.mkdir(exist_ok=True)  # an empty directory too
            tmp.rename(path)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
    return path


def relative(name: str, sender: str, fix: str) -> PurePosixPath:
    """``name`` as a path that stays inside the directory it is written to, or one sentence
    naming the ``sender`` of a name that would leave it."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ConfigError(f"{sender} sent a file named {name!r}", fix)
    return path


class Localized:
    """The client's paths, each replaced by its cached copy on this worker."""

    def __init__(self, local: dict[str, Path], scratch: Path) -> None:
        self.local = local
        self.scratch = scratch  # writable disk images are copied here, one per run

    def path(self, name: str) -> str:
        return str(self.local.get(name, name))

    def disks(self, disks: Iterable[Disk] | None) -> tuple[Disk, ...] | None:
        """Disks backed by cached files; a writable one gets its own copy (the VM writes
        to it, and the cached file must keep the content its hash names)."""
        if disks is None:
            return None
        out = []
        for disk in disks:
            if disk.backing in self.local:
                backing = self.local[disk.backing]
                if not disk.read_only:
                    copy = self.scratch / "disks" / f"{len(out)}-{backing.name}"
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(backing, copy)
                    backing = copy
                disk = replace(disk, backing=str(backing))
            out.append(disk)
        return tuple(out)

    def scheduler(self, scheduler: Scheduler) -> Scheduler:
        if scheduler.is_eevdf:
            return scheduler
        config = scheduler.config_file
        return replace(
            scheduler,
            binary=self.path(scheduler.binary),  # type: ignore[arg-type]
            config_file=None if config is None else self.path(config),
        )

    def scenario(self, ref: str, origin: str | None = None) -> Scenario:
        """The scenario a reference names: a user file from the cache, its files too.

        ``origin`` is the file's resolved path on the client: a path the file builds from
        its own place (``Path(__file__).parent / "conf"``) points into the cache here, and
        is looked up as the client built it.
        """
        from ktstr.userfile import scenario as load

        name = scenario_file(ref)
        if name is not None:
            ref = self.path(name) + ref[len(name) :]
        scenario = load(ref)
        cached = Path(self.path(name)).resolve().parent if name else None

        def as_client(path: str | None) -> str | None:
            if path is None or cached is None or origin is None:
                return path
            if not Path(path).is_relative_to(cached):
                return path
            return str(Path(origin).parent / Path(path).relative_to(cached))

        disks = [replace(d, backing=as_client(d.backing)) for d in scenario.disks]
        return replace(
            scenario,
            include_files=tuple(self.path(str(as_client(p))) for p in scenario.include_files),
            disks=self.disks(disks) or (),
        )


def origin(ref: str) -> str | None:
    """The resolved path of the user file a reference names, as this host sees it."""
    name = scenario_file(ref)
    return None if name is None else str(Path(name).expanduser().resolve())
