"""Declared disks -> backing files in the run directory and QEMU virtio-blk devices."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ktstr.disk import Disk, check_disks
from ktstr.errors import ConfigError, EnvironmentProblem

log = logging.getLogger(__name__)
DRIVE_ID = "ktstr-disk{}"  # QMP's query-blockstats names each disk by this id


@dataclass(frozen=True)
class PreparedDisk:
    index: int
    disk: Disk
    serial: str
    path: Path
    size: int
    created: bool  # ktstr made the backing file (a fresh, zeroed disk)

    @property
    def temporary(self) -> bool:
        """A disk in the run directory that nobody asked to keep."""
        return self.disk.backing is None and not self.disk.keep

    @property
    def drive_id(self) -> str:
        return DRIVE_ID.format(self.index)

    @property
    def mount_point(self) -> str | None:
        return f"/mnt/disk{self.index}" if self.disk.fs else None

    def guest_spec(self) -> dict[str, object]:
        """What the agent needs to find and describe the disk."""
        return {
            "index": self.index,
            "serial": self.serial,
            "sectors": self.size // 512,
            "read_only": self.disk.read_only,
            "mount": self.mount_point,
            "fs": self.disk.fs,
        }

    def as_record(self) -> dict[str, object]:
        d = self.disk
        return {
            "index": self.index,
            "serial": self.serial,
            "capacity_bytes": self.size,
            "read_only": d.read_only,
            "cache": d.cache,
            "fs": d.fs,
            "throttle": d.throttle.as_dict(),
            "backing": str(self.path),
            "backing_created": self.created,
            "kept": not self.temporary,
        }


def _qemu_value(text: str) -> str:
    """QEMU's option syntax doubles a comma inside a value."""
    return text.replace(",", ",,")


def _check_direct_io(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as err:
        raise ConfigError(
            f"the filesystem holding {path} refuses direct I/O ({err.strerror}), "
            "which cache='none' needs",
            "use cache='writeback' (--disk ...,cache=writeback) or a run directory on ext4/xfs",
        ) from None
    os.close(fd)


def _format(path: Path, size: int, label: str) -> None:
    tool = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/sbin:/usr/sbin")
    if not tool:
        raise EnvironmentProblem(
            "mkfs.ext4 is not installed", "install it with: sudo apt-get install e2fsprogs"
        )
    # Initialise inode tables now, so the guest kernel's lazy init does no I/O mid-test.
    argv = [tool, "-q", "-F", "-L", label, "-E", "lazy_itable_init=0,lazy_journal_init=0"]
    done = subprocess.run(argv + [str(path), f"{size // 1024}k"], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EnvironmentProblem(
            f"mkfs.ext4 failed on {path}: {last}",
            "check free space and permissions where the disk's backing file lives",
        )


def prepare(disks: Sequence[Disk], run_dir: Path) -> list[PreparedDisk]:
    """Create or check each disk's backing file; nothing is left half-made on error."""
    made: list[PreparedDisk] = []
    backings = [
        Path(d.backing).expanduser().resolve() if d.backing else run_dir / f"disk{i}.img"
        for i, d in enumerate(check_disks(disks))
    ]
    for path in backings:
        if backings.count(path) > 1:
            raise ConfigError(
                f"two disks use the backing file {path}", "give each disk its own backing file"
            )
    try:
        for index, (disk, path) in enumerate(zip(disks, backings, strict=True)):
            made.append(_prepare_one(index, disk, path))
    except BaseException:
        _discard(made)
        raise
    return made


def _prepare_one(index: int, disk: Disk, path: Path) -> PreparedDisk:
    size = disk.size
    created = not path.exists()
    if created:
        if not path.parent.is_dir():
            raise ConfigError(
                f"disk backing {path} is in a directory that does not exist",
                "create the directory or give another backing path",
            )
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: costs no space until written
    elif not path.is_file():
        raise ConfigError(f"disk backing {path} is not a regular file", "give a file path")
    elif path.stat().st_size < size:
        raise ConfigError(
            f"disk backing {path} holds {path.stat().st_size} bytes, less than the "
            f"{size}-byte capacity",
            f"grow it (truncate -s {size} {path}) or declare a smaller capacity",
        )
    prepared = PreparedDisk(index, disk, disk.serial_for(index), path, size, created)
    try:
        if disk.cache == "none":
            _check_direct_io(path)
        if disk.fs and created:
            _format(path, size, f"disk{index}")
    except BaseException:
        _discard([prepared])
        raise
    return prepared


def _discard(disks: Sequence[PreparedDisk]) -> None:
    """Undo a failed preparation: remove every file it created, wherever."""
    for p in disks:
        if p.created:
            p.path.unlink(missing_ok=True)


def qemu_args(disks: Sequence[PreparedDisk]) -> list[str]:
    """-drive/-device pairs; ``size=`` pins the capacity whatever the file's length."""
    argv: list[str] = []
    for p in disks:
        d = p.disk
        opts = [
            f"id={p.drive_id}",
            "if=none",
            f"file={_qemu_value(str(p.path))}",
            "format=raw",
            f"size={p.size}",
            f"cache={d.cache}",
            "aio=threads",
            # A host error (a full disk) reaches the guest as an I/O error and is
            # counted, instead of pausing the VM (QEMU's default for ENOSPC).
            "werror=report",
            "rerror=report",
        ]
        if d.read_only:
            opts.append("readonly=on")
        if d.throttle.iops:
            opts.append(f"throttling.iops-total={d.throttle.iops}")
        if d.throttle.bps:
            opts.append(f"throttling.bps-total={d.throttle.bps}")
        argv += ["-drive", ",".join(opts)]
        argv += ["-device", f"virtio-blk-pci,drive={p.drive_id},serial={p.serial}"]
    return argv


def cleanup(disks: Sequence[PreparedDisk]) -> None:
    """Remove run-directory backing files unless kept; a user's backing file always stays."""
    for p in disks:
        if p.temporary:
            p.path.unlink(missing_ok=True)
