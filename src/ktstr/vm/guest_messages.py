"""Validation of every guest message before the host uses it.

The guest is untrusted: a scheduler under test can corrupt it, and what it
sends ends up in arithmetic, comparisons, sort keys, file names and the
terminal.  ``wire.decode`` guarantees a JSON object of this schema version
and a known kind; ``validate`` then checks, per kind, the fields the host
reads (record/builder.py, record/disks.py, checks/, results/, probe, boot)
with their types and ranges, and a few rules for every value:

- no NaN or infinity anywhere (``1e999`` parses as infinity), no integer
  beyond 64 bits, no nesting deeper than ``MAX_DEPTH``;
- strings of bounded length without lone surrogates (they cannot be
  written as UTF-8, so a scheduler log or a terminal would fail on them);
- lists and objects of bounded size.

A field the host indexes directly is required; a field it reads with a
default is optional but typed when present.  Fields the host never reads
are left alone beyond the rules for every value, so a newer guest that adds
one is not refused.  A message that fails is dropped whole: half a worker
result would be judged as if it were all of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ktstr import wire
from ktstr.text import escape

MAX_DEPTH = 10  # a worker's io.lat_us.p99 is 3 levels down; disks[].stat_start.x is 4
MAX_ITEMS = 1_000_000  # any one list or object (a worker's progress: 10 points a second)
MAX_STRING = 1 << 20  # characters, any string (a sched_out line without a newline)
MAX_INT = 1 << 64  # counters are u64 in the kernel
MAX_CPU_ID = 8191  # x86-64 NR_CPUS is at most 8192
MAX_SECONDS = 1e9  # about 31 years: any clock or duration the guest reports
NAME = 4096  # paths, names, states
TEXT = 64 * 1024  # a message, a kernel log record, a traceback line

# A checker returns None, or (path inside the value, what is wrong).
Problem = tuple[str, str]
Check = Callable[[Any], Problem | None]


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(lo: int, hi: int) -> Check:
    def check(value: Any) -> Problem | None:
        if not _is_int(value):
            return "", f"expected an integer, got {_type_name(value)}"
        if not lo <= value <= hi:
            return "", f"{value} is outside [{lo}, {hi}]"
        return None

    return check


def number(lo: float, hi: float, *, above: bool = False) -> Check:
    """A finite int or float in [lo, hi] (or (lo, hi] with ``above``)."""

    def check(value: Any) -> Problem | None:
        if not (_is_int(value) or isinstance(value, float)):
            return "", f"expected a number, got {_type_name(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return "", f"{value} is not finite"
        if value < lo or value > hi or above and value == lo:
            return "", f"{value:g} is outside {'(' if above else '['}{lo:g}, {hi:g}]"
        return None

    return check


def string(max_len: int = NAME) -> Check:
    def check(value: Any) -> Problem | None:
        if not isinstance(value, str):
            return "", f"expected a string, got {_type_name(value)}"
        if len(value) > max_len:
            return "", f"string of {len(value)} characters (at most {max_len})"
        return None

    return check


def boolean(value: Any) -> Problem | None:
    return (
        None if isinstance(value, bool) else ("", f"expected true/false, got {_type_name(value)}")
    )


def nullable(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def either(*checks: Check) -> Check:
    def check(value: Any) -> Problem | None:
        problems = [c(value) for c in checks]
        if all(problems):
            return problems[0]
        return None

    return check


def list_of(item: Check, max_len: int) -> Check:
    def check(value: Any) -> Problem | None:
        if not isinstance(value, list):
            return "", f"expected a list, got {_type_name(value)}"
        if len(value) > max_len:
            return "", f"list of {len(value)} items (at most {max_len})"
        for i, v in enumerate(value):
            problem = item(v)
            if problem:
                return f"[{i}]{problem[0]}", problem[1]
        return None

    return check


def row(*items: Check, min_len: int | None = None) -> Check:
    """A short list with one checker per position (``[gap_s, at_s, cpu]``)."""
    least = len(items) if min_len is None else min_len

    def check(value: Any) -> Problem | None:
        if not isinstance(value, list):
            return "", f"expected a list, got {_type_name(value)}"
        if not least <= len(value) <= len(items):
            return "", f"{len(value)} items, expected {least} to {len(items)}"
        for i, v in enumerate(value):
            problem = items[i](v)
            if problem:
                return f"[{i}]{problem[0]}", problem[1]
        return None

    return check


def _cpu_key(key: str) -> str | None:
    if not (key.isascii() and key.isdigit() and len(key) <= 5 and int(key) <= MAX_CPU_ID):
        return "is not a CPU number"
    return None


def dict_of(value_check: Check, max_len: int, cpu_keys: bool = False) -> Check:
    """An object with arbitrary keys (CPU numbers with ``cpu_keys``), all values alike."""

    def check(value: Any) -> Problem | None:
        if not isinstance(value, dict):
            return "", f"expected an object, got {_type_name(value)}"
        if len(value) > max_len:
            return "", f"object of {len(value)} keys (at most {max_len})"
        for k, v in value.items():
            if len(k) > NAME:
                return "", f"a key of {len(k)} characters (at most {NAME})"
            where = f"[{escape(k, limit=20)!s}]"
            if cpu_keys and _cpu_key(k):
                return where, "key is not a CPU number"
            problem = value_check(v)
            if problem:
                return where + problem[0], problem[1]
        return None

    return check


def obj(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """An object whose named fields are checked; other fields are left alone."""
    optional = optional or {}

    def check(value: Any) -> Problem | None:
        if not isinstance(value, dict):
            return "", f"expected an object, got {_type_name(value)}"
        for name, c in required.items():
            if name not in value:
                return f".{name}", "missing"
            problem = c(value[name])
            if problem:
                return f".{name}{problem[0]}", problem[1]
        for name, c in optional.items():
            if name in value:
                problem = c(value[name])
                if problem:
                    return f".{name}{problem[0]}", problem[1]
        return None

    return check


# ---- the shapes -----------------------------------------------------------

CPU = integer(0, MAX_CPU_ID)
COUNT = integer(0, MAX_INT)
SECONDS = number(-MAX_SECONDS, MAX_SECONDS)  # scenario times: ops of the first step are < 0
UPTIME = number(0, MAX_SECONDS)
ID = integer(0, 2**31)
CPU_LIST = list_of(CPU, MAX_CPU_ID + 1)
GROUPS = list_of(CPU_LIST, MAX_CPU_ID + 1)
MICROS = number(0, 1e15)
STATS = dict_of(COUNT, 64)  # /sys/block/<dev>/stat by field name

_WAKE = obj(
    {"n": COUNT, "p50_us": MICROS, "p99_us": MICROS, "max_us": MICROS},
    {"cdf_us": list_of(MICROS, 1000)},
)
_IO = obj(
    {"ops": dict_of(COUNT, 16), "bytes": dict_of(COUNT, 16), "iops": number(0, 1e12)},
    {
        "device": string(),
        "region": row(COUNT, COUNT),
        "errors": COUNT,
        "error_kinds": dict_of(COUNT, 256),
        "written": nullable(row(COUNT, COUNT)),
        "lat_us": nullable(obj({"p50": MICROS, "p99": MICROS, "max": MICROS})),
    },
)
_DISK = obj(
    {"serial": string(), "name": string(), "sectors": COUNT, "read_only": boolean},
    {
        "index": integer(0, 4096),
        "device": string(),
        "logical_block_size": integer(1, 2**31),
        "mount": nullable(string()),
        "stat_start": STATS,
    },
)
_DISK_END = obj({"serial": string()}, {"name": string(), "stat_end": STATS})
_SCX_VALUE = either(COUNT, string())

# ktstr verifier: one BPF program load (the log is at most 256 KiB and a marker) and
# one program the attached scheduler holds.
_VERIFIER_LOAD = obj(
    {"log": string(300 * 1024), "log_bytes": COUNT},
    {
        "name": string(64),
        "type": integer(0, 1 << 32),
        "fd": integer(-(2**63), 2**63),
        "errno": integer(0, 1 << 16),
        "id": integer(0, 1 << 32),
        "verified_insns": integer(0, 1 << 32),
        "log_level": integer(0, 1 << 32),
        "btf_id": integer(0, 1 << 32),
        "func_type_id": integer(0, 1 << 32),
        "func": string(256),
    },
)
_VERIFIER_LIVE = obj(
    {"id": integer(0, 1 << 32)},
    {"type": integer(0, 1 << 32), "insns": integer(0, 1 << 32)},
)

SCHEMAS: dict[str, Check] = {
    wire.HELLO: obj(
        {},
        {
            "release": string(),
            "cmdline": string(TEXT),
            "uptime_s": UPTIME,
            "python": string(),
            "mount_failures": list_of(string(), 64),
            "boot_marks": dict_of(UPTIME, 64),
            "agent_start_uptime_s": UPTIME,
            "cgroup_controllers": list_of(string(), 64),
        },
    ),
    wire.TOPOLOGY: obj(
        {
            "cpus": integer(1, MAX_CPU_ID + 1),
            "numa_nodes": GROUPS,
            "llcs": GROUPS,
            "smt_siblings": GROUPS,
        },
        {
            "numa_distances": list_of(list_of(integer(0, 255), 1024), 1024),
            "packages": integer(0, MAX_CPU_ID + 1),
        },
    ),
    wire.SCHED_EXT: obj(
        {},
        {
            "present": boolean,
            "state": _SCX_VALUE,
            "switch_all": _SCX_VALUE,
            "nr_rejected": _SCX_VALUE,
            "hotplug_seq": _SCX_VALUE,
            "enable_seq": _SCX_VALUE,
            "ops": string(),
        },
    ),
    wire.ERROR: obj({}, {"message": string(TEXT), "traceback": string(MAX_STRING)}),
    wire.DONE: obj({}, {"uptime_s": UPTIME}),
    wire.CALIBRATION: obj({"loop_s": number(0, 1e6, above=True)}, {"loops": integer(1, MAX_INT)}),
    wire.EVENT: obj(
        {"at_s": SECONDS, "op": string()},
        {
            "done_s": SECONDS,
            "path": nullable(string()),
            "cpus": nullable(CPU_LIST),
            "ids": list_of(ID, MAX_ITEMS),
            "affinity": nullable(CPU_LIST),
            "weight": number(0, 1e6),
            "dst": string(),
            "worker": ID,
            "ms": number(0, MAX_SECONDS),
            "disk": integer(0, 4096),
            "cpu": CPU,
            "controls": dict_of(string(TEXT), 64),  # cgroup control files read back
        },
    ),
    wire.SAMPLE: obj(
        {"at_s": SECONDS},
        {
            # Utilization is 0..1, but /proc/stat's iowait can run backwards: a
            # glitched sample is odd data, not a hostile one.
            "util": dict_of(number(-1e6, 1e6), MAX_CPU_ID + 1, cpu_keys=True),
            "steal": dict_of(COUNT, MAX_CPU_ID + 1, cpu_keys=True),
            "schedstat": dict_of(list_of(COUNT, 16), MAX_CPU_ID + 1, cpu_keys=True),
            "running": COUNT,
            "disks": dict_of(list_of(COUNT, 16), 4096),
        },
    ),
    wire.WORKER: obj(
        {"id": ID},
        {
            "work": string(),
            "pid": ID,
            "units": COUNT,
            "start_s": SECONDS,
            "end_s": SECONDS,
            "gaps": list_of(
                row(
                    number(0, MAX_SECONDS),
                    SECONDS,
                    nullable(CPU),
                    number(0, MAX_SECONDS),
                    COUNT,
                    COUNT,
                    min_len=3,
                ),
                1000,
            ),
            "cpus": dict_of(COUNT, MAX_CPU_ID + 1, cpu_keys=True),
            "migrations": COUNT,
            "residency": list_of(row(SECONDS, CPU), MAX_ITEMS),
            "progress": list_of(
                row(SECONDS, COUNT, nullable(CPU), nullable(COUNT), min_len=2), MAX_ITEMS
            ),
            "wake": nullable(_WAKE),
            "cgroup": string(),
            "cgroup_path": string(),
            "error": nullable(string(TEXT)),
            "killed": boolean,
            "policy": string(),
            "rt_priority": integer(-1000, 1000),
            "nice": integer(-1000, 1000),
            "cpu_time_ns": COUNT,
            "wait_ns": COUNT,
            "timeslices": COUNT,
            "released_cpu_ns": COUNT,
            "ext_at_start": nullable(boolean),
            "ext_at_end": nullable(boolean),
            "io": nullable(_IO),
            # cpu.stat [periods, throttled periods, throttled us] per cgroup with a quota
            "throttled": dict_of(list_of(COUNT, 3), 1024),
            "mempolicy": obj({"mode": string(), "nodes": list_of(integer(0, 1 << 16), 1024)}),
            "mems_allowed": string(),
            "numa_pages": dict_of(COUNT, 1024),
        },
    ),
    wire.SCENARIO_END: obj({"at_s": SECONDS}, {"skipped": string(TEXT)}),
    wire.SCHED: obj(
        {"event": string(), "at_s": SECONDS},
        {
            "pid": ID,
            "argv": list_of(string(TEXT), 4096),
            "ops": string(),
            "events": dict_of(integer(-MAX_INT, MAX_INT), 1024),
            "state": string(),
            "exited": boolean,
            "timeout_s": number(0, MAX_SECONDS),
            "code": integer(-(2**31), 2**31),
            "signal": integer(0, 1024),
            "core": boolean,
            "enable_seq": string(),
            "nr_rejected": string(),
        },
    ),
    wire.SCHED_OUTPUT: obj({"line": string(MAX_STRING), "at_s": SECONDS}),
    wire.KMSG: obj(
        {"text": string(TEXT)},
        {
            "level": integer(0, 7),
            "usec": COUNT,
            "mono": UPTIME,
            "at_s": SECONDS,
            "task_kthread": boolean,
        },
    ),
    wire.DISKS: obj({"disks": list_of(_DISK, 4096)}),
    wire.DISK_STATS: obj({"disks": list_of(_DISK_END, 4096)}),
    wire.EXEC_OUTPUT: obj({"stream": string(16), "data": string(MAX_STRING)}),
    wire.EXEC_END: obj(
        {"timed_out": boolean, "elapsed_s": UPTIME},
        {"code": integer(0, 255), "signal": integer(1, 1024), "skipped": string(TEXT)},
    ),
    wire.PAYLOAD_OUTPUT: obj(
        {"id": ID, "stream": string(16), "data": string(MAX_STRING)},
    ),
    wire.PAYLOAD_END: obj(
        {"id": ID, "at_s": SECONDS, "elapsed_s": SECONDS},
        {
            "code": integer(0, 255),
            "signal": integer(1, 1024),
            "stopped_by": nullable(string(64)),
            "dropped": dict_of(COUNT, 4),
        },
    ),
    wire.VERIFIER: obj(
        {"loads": list_of(_VERIFIER_LOAD, 4096), "live": list_of(_VERIFIER_LIVE, 4096)},
        {"problem": string(TEXT)},
    ),
}

# Fields some ops or events must carry because the checks index them.
_EVENT_NEEDS = {
    "spawn": {"path": string(), "ids": list_of(ID, MAX_ITEMS)},
    "move_tasks": {"path": string(), "dst": string()},
    "add_cgroup": {"path": string()},
    "set_cpuset": {"path": string()},
    "set_weight": {"path": string()},
    "set_controls": {"path": string()},
    "remove_cgroup": {"path": string()},
    "freeze": {"path": string()},
    "unfreeze": {"path": string()},
    "set_affinity": {"path": string(), "cpus": CPU_LIST},
    "stop_workers": {"ids": list_of(ID, MAX_ITEMS)},
    "debug_escape_cpuset": {"path": string(), "worker": ID},
}
_SCHED_NEEDS = {"state": {"state": string()}}
_ENVELOPE = obj({"t": UPTIME})


def _every_value(msg: dict[str, Any]) -> Problem | None:
    """The rules for every value, walked without recursion (depth is the guest's choice).

    Scalars are checked in place and only containers go on the stack (a
    worker result holds tens of thousands of numbers); paths are kept as
    (parent, key) links and spelled out only for a problem.
    """
    stack: list[tuple[Any, Any, int]] = [(msg, None, 1)]
    while stack:
        container, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            return _spell(at), f"nested deeper than {MAX_DEPTH} levels"
        if len(container) > MAX_ITEMS:
            return _spell(at), f"{len(container)} items (at most {MAX_ITEMS})"
        if isinstance(container, dict):
            for k in container:
                if not isinstance(k, str) or len(k) > NAME or not _encodable(k):
                    return _spell(at), "a key that is too long or not text"
            items: Any = container.items()
        else:
            items = enumerate(container)
        for key, value in items:
            kind = type(value)
            what = None
            if kind is float:
                if value - value != 0:  # NaN and infinities only
                    what = f"{value} is not finite"
            elif kind is int:
                if value > MAX_INT or value < -MAX_INT:
                    what = "integer wider than 64 bits"
            elif kind is str:
                if len(value) > MAX_STRING:
                    what = f"string of {len(value)} characters (at most {MAX_STRING})"
                elif not _encodable(value):
                    what = "string with a lone surrogate (not valid Unicode text)"
            elif kind is dict or kind is list:
                stack.append((value, (at, key), depth + 1))
            elif value is not None and kind is not bool:
                what = f"unexpected {_type_name(value)}"
            if what:
                return _spell((at, key)), what
    return None


def _spell(at: Any) -> str:
    parts = []
    while at is not None:
        at, key = at
        parts.append(f".{escape(key, limit=40)}" if isinstance(key, str) else f"[{key}]")
    return "".join(reversed(parts))


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(msg: dict[str, Any]) -> str | None:
    """None if the host may use this decoded message; else one line saying why not.

    The reason names the kind and the field (``worker: .gaps[0][1]: inf is
    not finite``); guest text in it is escaped and bounded.
    """
    kind = msg.get("kind")
    if kind not in SCHEMAS:  # wire.decode refuses these; a caller that skipped it may not
        return f"unknown kind {escape(str(kind), limit=40)}"
    problem = _every_value(msg) or _ENVELOPE(msg) or SCHEMAS[kind](msg)
    if problem is None and kind == wire.EVENT:
        needs = _EVENT_NEEDS.get(msg["op"])
        problem = obj(needs)(msg) if needs else None
    if problem is None and kind == wire.SCHED:
        needs = _SCHED_NEEDS.get(msg["event"])
        problem = obj(needs)(msg) if needs else None
    if problem is None:
        return None
    path, what = problem
    where = f"{path.lstrip('.')}: " if path else ""
    return escape(f"{kind}: {where}{what}", limit=300)
