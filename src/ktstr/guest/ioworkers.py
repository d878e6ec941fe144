"""I/O workers: tasks that block on a virtio disk, so the scheduler sees I/O wakeups.

Each works on a raw block device given by the agent (``g["device"]``)
and records operations, bytes, latency quantiles and errors.  An error
is counted and the loop goes on: a failing disk must show up in the
record, not end the worker.  Writers write ``wire.io_pattern`` so the
host can check the backing file byte for byte after the run.
"""

from __future__ import annotations

import errno
import mmap
import os
import time

from ktstr import wire
from ktstr.guest.quantiles import percentile

MAX_LATENCIES = 200_000


class IoStats:
    def __init__(self, device: str, device_size: int, start: int, end: int) -> None:
        self.device, self.device_size = device, device_size
        self.region = [start, end]
        self.holes = False  # a write inside the disk failed: ``written`` is not whole
        self.ops = {"read": 0, "write": 0, "flush": 0}
        self.bytes = {"read": 0, "write": 0}
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.written: list[int] | None = None  # [lowest, highest) byte written in full
        self.first = self.last = time.monotonic()

    def done(self, kind: str, started: float, nbytes: int = 0) -> None:
        now = time.monotonic()
        self.last = now
        self.ops[kind] += 1
        if kind in self.bytes:
            self.bytes[kind] += nbytes
        if len(self.latencies) < MAX_LATENCIES:
            self.latencies.append(now - started)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
        self.last = time.monotonic()

    def wrote(self, offset: int, size: int, done: bool) -> None:
        if not done:
            if offset + size <= self.device_size:  # a hole inside the disk: the range is broken
                self.holes = True
            return
        if self.written is None:
            self.written = [offset, offset + size]
        else:
            self.written = [min(self.written[0], offset), max(self.written[1], offset + size)]

    def as_dict(self) -> dict[str, object]:
        lat = sorted(self.latencies)
        span = self.last - self.first
        total = self.ops["read"] + self.ops["write"]  # as QEMU's IOPS limit counts: no flushes
        return {
            "device": self.device,
            "region": self.region,
            "ops": dict(self.ops),
            "bytes": dict(self.bytes),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "iops": round(total / span, 1) if span > 0 else 0.0,
            "written": None if self.holes else self.written,
            "lat_us": {
                "p50": round(percentile(lat, 0.5) * 1e6, 1),
                "p99": round(percentile(lat, 0.99) * 1e6, 1),
                "max": round(lat[-1] * 1e6, 1),
            }
            if lat
            else None,
        }


def _errname(err: OSError) -> str:
    return errno.errorcode.get(err.errno or 0, str(err.errno))


def _region(p: dict, g: dict, bs: int) -> tuple[int, int]:
    """This worker's share of the disk, block-aligned; the last share may overrun the end."""
    size = g["sectors"] * 512
    start = size * g["slot"] // g["slots"] // bs * bs
    end = size * (g["slot"] + 1) // g["slots"] // bs * bs
    if g["slot"] == g["slots"] - 1:
        end += p.get("overrun_kb", 0) * 1024
    if end - start < bs:
        raise ValueError(f"{g['device']} is too small for {g['slots']} workers of {bs} bytes")
    return start, end


def _open(stats: IoStats, path: str, write: bool, direct: bool) -> int:
    flags = (os.O_RDWR if write else os.O_RDONLY) | (os.O_DIRECT if direct else 0)
    try:
        return os.open(path, flags)
    except OSError as err:
        stats.error(_errname(err))
        raise


class _Lcg:
    """Cheap pseudo-random offsets (seeded per worker) without importing ``random``."""

    def __init__(self, seed: int) -> None:
        self.state = seed & 0x7FFFFFFF

    def below(self, n: int) -> int:
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state * n) >> 31


def _transfer(stats: IoStats, kind: str, call, fd: int, buf: mmap.mmap, offset: int) -> int:
    """One pwritev/preadv, timed and counted; a partial transfer is an error too."""
    started = time.monotonic()
    try:
        n = call(fd, [buf], offset)
    except OSError as err:
        stats.error(_errname(err))
        return 0
    stats.done(kind, started, n)
    if n < len(buf):
        stats.error(f"short_{kind}")
    return n


def _write(stats: IoStats, fd: int, buf: mmap.mmap, offset: int, contiguous: bool) -> None:
    """Write the pattern; ``contiguous`` writers also track the range they cover."""
    buf[:] = wire.io_pattern(offset, len(buf))
    done = _transfer(stats, "write", os.pwritev, fd, buf, offset) == len(buf)
    if contiguous:
        stats.wrote(offset, len(buf), done)


def _read(stats: IoStats, fd: int, buf: mmap.mmap, offset: int) -> None:
    _transfer(stats, "read", os.preadv, fd, buf, offset)


def _flush(stats: IoStats, fd: int) -> None:
    started = time.monotonic()
    try:
        os.fdatasync(fd)
    except OSError as err:
        stats.error(_errname(err))
        return
    stats.done("flush", started)


def _loop(rec, p: dict, g: dict, write: bool, body) -> None:
    """Open the device, run ``body(stats, fd, buf, start, end, n)`` per op, flush, record."""
    bs = p["bs_kb"] * 1024
    start, end = _region(p, g, bs)
    stats = IoStats(g["device"], g["sectors"] * 512, start, end)
    buf = mmap.mmap(-1, bs)  # page-aligned, as O_DIRECT needs
    fd = -1
    try:
        fd = _open(stats, g["device"], write, bool(p.get("direct", True)))
        n = 0
        while True:
            body(stats, fd, buf, start, end, n)
            n += 1
            rec.stamp()
    finally:
        if fd >= 0:
            if write:
                _flush(stats, fd)  # what the worker wrote is on the device when it ends
            os.close(fd)
        rec.extra["io"] = stats.as_dict()


def k_io_seq_write(rec, p: dict, g: dict) -> None:
    bs = p["bs_kb"] * 1024

    def body(stats, fd, buf, start, end, n):
        offset = start + n * bs % (end - start) // bs * bs
        _write(stats, fd, buf, offset, contiguous=True)
        if p["sync_every"] and (n + 1) % p["sync_every"] == 0:
            _flush(stats, fd)

    _loop(rec, p, g, True, body)


def k_io_rand_read(rec, p: dict, g: dict) -> None:
    bs = p["bs_kb"] * 1024
    lcg = _Lcg(os.getpid())

    def body(stats, fd, buf, start, end, n):
        _read(stats, fd, buf, start + lcg.below((end - start) // bs) * bs)

    _loop(rec, p, g, False, body)


def k_io_sync_write(rec, p: dict, g: dict) -> None:
    """A sequential pattern write then fdatasync, every time: an fsync storm."""
    k_io_seq_write(rec, dict(p, sync_every=1), g)


def k_io_convoy(rec, p: dict, g: dict) -> None:
    """Small direct writes and reads on one hot region every convoy worker shares."""
    bs = p["bs_kb"] * 1024
    hot = max(bs, min(p["hot_kb"] * 1024, g["sectors"] * 512) // bs * bs)
    lcg = _Lcg(os.getpid())
    shared = dict(g, slot=0, slots=1, sectors=hot // 512)  # every convoy worker: [0, hot)

    def body(stats, fd, buf, start, end, n):
        offset = lcg.below(hot // bs) * bs
        if n % 2:
            _read(stats, fd, buf, offset)
        else:
            _write(stats, fd, buf, offset, contiguous=False)

    _loop(rec, p, shared, True, body)


KINDS = {name[2:]: fn for name, fn in list(globals().items()) if name.startswith("k_")}
