"""Disks a test declares: capacity, backing file, read-only, serial, throttle, cache.

A Disk is data, validated when it is made; ``ktstr.vm.drives`` turns the
declared disks of one run into backing files and QEMU virtio-blk devices,
and the guest finds each one by its serial.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ktstr.errors import ConfigError

SERIAL_MAX_BYTES = 20  # virtio-blk's serial field: longer serials are cut by the device
SECTOR = 512
CACHE_MODES = ("none", "writeback")
FILESYSTEMS = ("ext4",)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int, what: str = "size") -> int:
    """``"256MiB"``, ``"1G"``, ``"4096"`` or an int -> bytes (K, M, G are binary)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not a size", "write e.g. 256MiB or 1GiB")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise ConfigError(
                f"{what} {value!r} is not a size", "write a number with K, M, G, KiB, MiB or GiB"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{what} {value!r} is not positive", "give a size above 0")
    return size


@dataclass(frozen=True)
class Throttle:
    """QEMU's I/O limits for one disk: operations and bytes per second, reads + writes."""

    iops: int | None = None
    bps: int | None = None

    def __post_init__(self) -> None:
        for name in ("iops", "bps"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ConfigError(
                    f"throttle {name}={value!r} must be a positive whole number",
                    f"give {name}=N with N > 0, or leave it out for no limit",
                )

    def as_dict(self) -> dict[str, int | None]:
        return {"iops": self.iops, "bps": self.bps}


@dataclass(frozen=True)
class Disk:
    """One virtio-blk disk in the test VM.

    With no ``backing`` the disk is a sparse file in the run directory,
    removed after the run unless ``keep``.  The guest sees exactly
    ``capacity`` bytes whatever the backing file's size, and a write past
    the end never grows the file.  ``fs="ext4"`` formats the disk on the
    host before boot; the guest mounts it at ``/mnt/disk<index>``.
    """

    capacity: str | int = "256MiB"
    backing: str | None = None
    read_only: bool = False
    serial: str | None = None  # None: "ktstr-<index>"
    throttle: Throttle = field(default_factory=Throttle)
    cache: str = "none"
    fs: str | None = None
    keep: bool = False

    def __post_init__(self) -> None:
        size = parse_size(self.capacity, "disk capacity")
        if size % SECTOR:
            raise ConfigError(
                f"disk capacity {self.capacity!r} is not a whole number of 512-byte sectors",
                "give a multiple of 512 bytes, e.g. 256MiB",
            )
        if self.serial is not None:
            check_serial(self.serial)
        if self.cache not in CACHE_MODES:
            raise ConfigError(
                f"disk cache mode {self.cache!r} is not known", f"use one of {CACHE_MODES}"
            )
        if self.fs is not None and self.fs not in FILESYSTEMS:
            raise ConfigError(f"filesystem {self.fs!r} is not supported", "use fs='ext4'")
        if self.fs and self.read_only and self.backing is None:
            raise ConfigError(
                "a read-only disk with a fresh filesystem can never hold data",
                "drop ro, or give a backing file that already has the filesystem",
            )

    @property
    def size(self) -> int:
        return parse_size(self.capacity, "disk capacity")

    def serial_for(self, index: int) -> str:
        return self.serial if self.serial is not None else f"ktstr-{index}"

    def describe(self, index: int) -> str:
        parts = [f"{self.size // 2**20} MiB" if self.size >= 2**20 else f"{self.size} B"]
        parts.append(f"serial {self.serial_for(index)}")
        if self.read_only:
            parts.append("read-only")
        if self.throttle.iops:
            parts.append(f"{self.throttle.iops} IOPS")
        if self.throttle.bps:
            parts.append(f"{self.throttle.bps} B/s")
        if self.fs:
            parts.append(self.fs)
        return ", ".join(parts)


def check_serial(serial: str) -> str:
    data = serial.encode()
    if len(data) > SERIAL_MAX_BYTES:
        raise ConfigError(
            f"disk serial {serial!r} is {len(data)} bytes; virtio-blk keeps at most "
            f"{SERIAL_MAX_BYTES}",
            f"shorten it to {SERIAL_MAX_BYTES} bytes or fewer",
        )
    if not data or not re.fullmatch(rb"[A-Za-z0-9._-]+", data):
        raise ConfigError(
            f"disk serial {serial!r} must be letters, digits, '.', '_' or '-'",
            "choose a plain serial such as ktstr-data",
        )
    return serial


def check_disks(disks: Sequence[Disk]) -> tuple[Disk, ...]:
    """Refuse two disks the guest could not tell apart."""
    serials = [d.serial_for(i) for i, d in enumerate(disks)]
    for s in serials:
        if serials.count(s) > 1:
            raise ConfigError(f"two disks have the serial {s!r}", "give each disk its own serial")
    return tuple(disks)


def check_shareable(
    disk_sets: Sequence[Sequence[Disk]], parallel_vms: int, serially: str = "--jobs 1"
) -> None:
    """Refuse a writable backing file that VMs running at once would fight over.

    ``disk_sets`` holds each VM's disks.  QEMU locks a writable image, so the
    second VM would fail to boot, and without the lock their writes would mix.
    """
    if parallel_vms < 2:
        return
    users: dict[str, list[int]] = {}
    for disks in disk_sets:
        for i, disk in enumerate(disks):
            if disk.backing and not disk.read_only:
                users.setdefault(os.path.realpath(disk.backing), []).append(i)
    for path, indexes in users.items():
        if len(indexes) > 1:
            raise ConfigError(
                f"disk {indexes[0]} writes to {path}, which {len(indexes)} VMs would share "
                f"with {parallel_vms} running at once",
                "give it ro, drop backing= (each VM then gets its own scratch file) or run with "
                f"{serially}",
            )


DISK_OPTION_HELP = (
    "a disk: CAPACITY[,ro][,iops=N][,bps=N][,serial=S][,cache=none|writeback]"
    "[,backing=PATH][,fs=ext4][,keep] (e.g. 256MiB,iops=500); repeat for more disks"
)


def parse_disk_option(text: str) -> Disk:
    """The CLI's ``--disk`` value -> a Disk."""
    capacity, *items = [p.strip() for p in text.split(",")]
    kwargs: dict[str, object] = {"capacity": capacity}
    throttle: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep and key in ("ro", "keep"):
            kwargs["read_only" if key == "ro" else "keep"] = True
        elif sep and key in ("iops", "bps"):
            throttle[key] = parse_size(value, key) if key == "bps" else _whole(key, value)
        elif sep and key in ("serial", "cache", "backing", "fs"):
            kwargs[key] = value
        else:
            raise ConfigError(f"--disk {text!r}: {item!r} is not understood", DISK_OPTION_HELP)
    if throttle:
        kwargs["throttle"] = Throttle(**throttle)
    return Disk(**kwargs)  # type: ignore[arg-type]


def _whole(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a whole number", f"write {key}=500") from None
