"""Disks in the guest: load virtio_blk, find each disk by serial, mount, count I/O.

The host packs the driver module (when the kernel has it as a module)
and lists the disks it attached; this module loads the driver, waits for
every serial to appear under /sys/block, and reports what the guest sees.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time

from ktstr.guest import system, topo

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_FINIT_MODULE = 313  # x86_64
APPEAR_TIMEOUT_S = 20.0
# /sys/block/<dev>/stat, in order (Documentation/block/stat.rst).
STAT_FIELDS = (
    "read_ios",
    "read_merges",
    "read_sectors",
    "read_ticks_ms",
    "write_ios",
    "write_merges",
    "write_sectors",
    "write_ticks_ms",
    "in_flight",
    "io_ticks_ms",
    "time_in_queue_ms",
    "discard_ios",
    "discard_merges",
    "discard_sectors",
    "discard_ticks_ms",
    "flush_ios",
    "flush_ticks_ms",
)


def load_module(path: str) -> str:
    """finit_module(2) one packed module; 'loaded' or 'present' (already in)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syscall(_SYS_FINIT_MODULE, fd, b"", 0) == 0:
            return "loaded"
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return "present"
        raise OSError(
            err,
            f"loading {os.path.basename(path)}: {os.strerror(err)}; the packed module does "
            "not fit the booted kernel (use the kernel's own modules: 'ktstr kernel fetch', "
            "or build the driver in)",
        )
    finally:
        os.close(fd)


def _read_text(path: str) -> str:
    return topo.read(path) or ""


def _serials() -> dict[str, str]:
    """serial -> block device name, for the virtio disks present now."""
    out = {}
    for name in os.listdir("/sys/block"):
        if name.startswith("vd"):
            out[_read_text(f"/sys/block/{name}/serial")] = name
    return out


def find(declared: list[dict], timeout_s: float = APPEAR_TIMEOUT_S) -> dict[str, str]:
    """Wait until every declared serial has a block device; serial -> name."""
    wanted = {d["serial"] for d in declared}
    deadline = time.monotonic() + timeout_s
    while True:
        found = _serials()
        if wanted <= set(found):
            return {s: found[s] for s in wanted}
        if time.monotonic() >= deadline:
            missing = sorted(wanted - set(found))
            raise RuntimeError(
                f"disk(s) {', '.join(missing)} did not appear within {timeout_s:.0f} s "
                f"(the guest sees {sorted(found) or 'no virtio disks'}); the kernel needs "
                "CONFIG_VIRTIO_BLK (built in, or as a module ktstr can find)"
            )
        time.sleep(0.02)


def stat(name: str) -> dict[str, int]:
    values = _read_text(f"/sys/block/{name}/stat").split()
    return {k: int(v) for k, v in zip(STAT_FIELDS, values, strict=False)}


def sample(name: str) -> list[int]:
    """Completed reads, writes and flushes, and requests in flight, for a timeline."""
    counters = stat(name)
    keys = ("read_ios", "write_ios", "flush_ios", "in_flight")
    return [counters[k] for k in keys] if all(k in counters for k in keys) else []


def describe(disk: dict, name: str) -> dict[str, object]:
    base = f"/sys/block/{name}"
    return {
        "index": disk["index"],
        "serial": _read_text(f"{base}/serial"),
        "name": name,
        "device": f"/dev/{name}",
        "sectors": int(_read_text(f"{base}/size") or 0),
        "read_only": _read_text(f"{base}/ro") == "1",
        "logical_block_size": int(_read_text(f"{base}/queue/logical_block_size") or 512),
        "mount": disk.get("mount"),
        "stat_start": stat(name),
    }


def setup(spec: dict) -> list[dict[str, object]]:
    """Load the driver, find, mount and describe every declared disk."""
    declared = spec.get("disks") or []
    if not declared:
        return []
    for path in spec.get("modules") or []:
        load_module(path)
    names = find(declared)
    devices = []
    for disk in declared:
        name = names[disk["serial"]]
        if disk.get("mount"):
            flags = system.MS_RDONLY if disk["read_only"] else 0
            try:
                system.mount(f"/dev/{name}", disk["mount"], disk["fs"], "noinit_itable", flags)
            except OSError as err:
                raise RuntimeError(
                    f"{err}; does disk {disk['index']}'s backing file hold an {disk['fs']} "
                    "filesystem? Format it, or drop fs to use the raw device"
                ) from None
        devices.append(describe(disk, name))
    return devices


def final_stats(devices: list[dict]) -> list[dict[str, object]]:
    """Each disk's counters now, after unmounting (which flushes) any filesystem."""
    os.sync()
    out = []
    for d in devices:
        if d.get("mount"):
            try:
                system.umount(str(d["mount"]))
            except OSError as err:
                print(f"ktstr-agent: {err}", flush=True)
        out.append({"serial": d["serial"], "name": d["name"], "stat_end": stat(str(d["name"]))})
    return out
