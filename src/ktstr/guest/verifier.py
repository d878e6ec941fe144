"""The verifier's statistics of the scheduler's programs, read in the guest.

The preload library (host: ``ktstr/verifier/shim.py``) writes one file per
program load the scheduler's loader made: a header of ``key value`` lines,
a blank line, then the verifier's log. This module reads them, adds which
programs the scheduler process still holds (``/proc/<pid>/fdinfo`` of its
``bpf-prog`` descriptors: program id, type and verified instructions) and
sends both as one ``verifier`` message. The host parses the logs.
"""

from __future__ import annotations

import os
import struct

from ktstr import wire
from ktstr.guest.channel import Channel

MAX_LOADS = 4096
# A rejected program's log may be megabytes; its start and its end (where the error
# is) are kept.
LOG_HEAD = 32 * 1024
LOG_TAIL = 224 * 1024
# All logs of one report together stay far below the channel's line cap (8 MiB): past
# this, a log keeps only its last SHORT_TAIL bytes (where a rejection's error is).
LOG_BUDGET = 2 * 1024 * 1024
SHORT_TAIL = 4096
_HEADER_INTS = (
    "type",
    "fd",
    "errno",
    "id",
    "verified_insns",
    "log_level",
    "btf_id",
    "func_type_id",
)
# Bytes after a BTF type's 12-byte header, by kind: fixed, and per vlen member.
_BTF_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0)}
_BTF_EXTRA |= {15: (0, 12), 17: (4, 0), 19: (0, 12)}


def btf_name(data: bytes, type_id: int) -> str | None:
    """The name of type ``type_id`` in a raw BTF object (None if it has no such type).

    The kernel keeps 15 characters of a program's name; its BTF function type has
    the whole name (``qmap_cgroup_set_weight`` and ``..._bandwidth`` share 15).
    """
    try:
        magic, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", data
        )
        if magic != 0xEB9F or type_id < 1:
            return None
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        for _ in range(type_id - 1):
            info = struct.unpack_from("<I", data, pos + 4)[0]
            fixed, per = _BTF_EXTRA.get((info >> 24) & 0x1F, (0, 0))
            pos += 12 + fixed + per * (info & 0xFFFF)
            if pos >= end:
                return None
        name_off = struct.unpack_from("<I", data, pos)[0]
        strings = hdr_len + str_off
        if name_off >= str_len:
            return None
        stop = data.index(b"\0", strings + name_off)
        return data[strings + name_off : stop].decode(errors="replace")[:256]
    except (struct.error, ValueError):
        return None


def read_load(path: str, head_bytes: int = LOG_HEAD, tail_bytes: int = LOG_TAIL) -> dict:
    """One load file -> its header fields and its log (bounded: head and tail)."""
    with open(path, "rb") as f:
        data = f.read()
    head, _, log = data.partition(b"\n\n")
    out: dict = {"log_bytes": len(log)}
    for line in head.decode(errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key in _HEADER_INTS:
            try:
                out[key] = int(value)
            except ValueError:
                continue
        elif key == "name":
            out["name"] = value[:64]
    if len(log) > head_bytes + tail_bytes:
        left_out = len(log) - head_bytes - tail_bytes
        log = log[:head_bytes] + b"\n... %d bytes left out ...\n" % left_out + log[-tail_bytes:]
    out["log"] = log.decode(errors="replace")
    return out


def live_programs(pid: int) -> list[dict]:
    """The BPF programs process ``pid`` holds open: id, type, verified instructions."""
    out = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        prog = {}
        for key, name in (("prog_id", "id"), ("prog_type", "type"), ("verified_insns", "insns")):
            value = fields.get(key, "").strip()
            if value.isdigit():
                prog[name] = int(value)
        if "id" in prog:
            out.append(prog)
    return out


def _func_name(directory: str, btf_id: int, type_id: int) -> str | None:
    try:
        with open(os.path.join(directory, f"btf-{btf_id}"), "rb") as f:
            return btf_name(f.read(), type_id)
    except OSError:
        return None


def report(channel: Channel, directory: str, pid: int) -> None:
    """Send every recorded load and the programs ``pid`` holds (none once it exited)."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith("load-"))
    except OSError as err:
        channel.send(wire.VERIFIER, loads=[], live=[], problem=f"{directory}: {err.strerror}")
        return
    loads = []
    budget = LOG_BUDGET
    for name in names[:MAX_LOADS]:
        short = budget < LOG_HEAD + LOG_TAIL
        try:
            load = read_load(os.path.join(directory, name), *((0, SHORT_TAIL) if short else ()))
        except OSError:
            continue
        budget -= len(load["log"])
        if load.get("btf_id") and load.get("func_type_id"):
            func = _func_name(directory, load["btf_id"], load["func_type_id"])
            if func:
                load["func"] = func
        loads.append(load)
    channel.send(wire.VERIFIER, loads=loads, live=live_programs(pid) if pid else [])
