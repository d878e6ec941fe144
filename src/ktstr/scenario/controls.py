"""cgroup v2 controls a scenario sets (cpu.max, memory.*, pids.max, ...) and memory policy.

Each control is validated where it is declared, so a typo or an impossible value is one
sentence before boot; ``files`` turns the declared values into the control files the
guest writes, as ``echo`` would write them.  What depends on the topology (the nodes a
cgroup may use, the CPUs a quota could ever use) is checked by the plan compiler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ktstr.errors import ConfigError

# The kernel's bounds on cpu.max (kernel/sched/core.c): a period of 1 ms to 1 s, a quota
# of at least 1 ms.
MIN_PERIOD_US, MAX_PERIOD_US, MIN_QUOTA_US = 1_000, 1_000_000, 1_000
DEFAULT_PERIOD_US = 100_000
MAX_NODES = 1024  # bits in the node mask the guest passes to set_mempolicy
# Keyword -> control file; the order is the order the guest writes them in.
FILES = {
    "mems": "cpuset.mems",
    "cpu_max": "cpu.max",
    "cpu_idle": "cpu.idle",
    "memory_max": "memory.max",
    "memory_high": "memory.high",
    "memory_low": "memory.low",
    "pids_max": "pids.max",
    "io_weight": "io.weight",
}
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MEMPOLICY_MODES = ("bind", "preferred", "interleave", "local")


def _bad(cgroup: str, what: str, fix: str) -> ConfigError:
    return ConfigError(f"cgroup {cgroup}: {what}", fix)


def cpu_max(cgroup: str, value: object) -> tuple[int, int] | float:
    """``quota_us`` or ``(quota_us, period_us)`` -> (quota, period), within the kernel's
    bounds; a float in (0, 1] stays a fraction of the CPUs the cgroup may use, which
    the plan compiler turns into a quota once it knows them (so a catalog scenario
    limits a 16-vCPU guest as much as a 4-vCPU one)."""
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise _bad(
                cgroup,
                f"cpu_max {value} is not a fraction of its CPUs in (0, 1]",
                "give e.g. 0.25 for a quarter of its CPUs, or a quota in microseconds",
            )
        return value
    pair = (value, DEFAULT_PERIOD_US) if isinstance(value, int) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
    ):
        raise _bad(
            cgroup,
            f"cpu_max {value!r} is not a quota or a (quota_us, period_us) pair",
            "write cpu_max=(50_000, 100_000) for half a CPU, or 0.5 for half its CPUs",
        )
    quota, period = pair
    if not MIN_PERIOD_US <= period <= MAX_PERIOD_US:
        raise _bad(
            cgroup,
            f"cpu.max period {period} us is outside {MIN_PERIOD_US}..{MAX_PERIOD_US}",
            "give a period from 1 ms to 1 s, in microseconds",
        )
    if quota < MIN_QUOTA_US:
        raise _bad(
            cgroup,
            f"cpu.max quota {quota} us is below the kernel's {MIN_QUOTA_US} us",
            "give a quota of 1 ms or more, in microseconds",
        )
    return quota, period


def memory_bytes(cgroup: str, name: str, value: object) -> int:
    """Bytes from an int or a string with a K, M or G suffix (``"64M"``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = re.fullmatch(r"(\d+)([KMG]?)", value.strip().upper()) if isinstance(value, str) else None
    if not m:
        raise _bad(
            cgroup,
            f"{name} {value!r} is not a size",
            "give bytes (67108864) or a size like '64M'",
        )
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def _bounded(cgroup: str, name: str, value: object, lo: int, hi: int, fix: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _bad(cgroup, f"{name} {value!r} is outside {lo}..{hi}", fix)
    return value


def nodes(what: str, value: object) -> tuple[int, ...]:
    """A set of NUMA node numbers, sorted; ``what`` names them in the error."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, tuple | list | set | frozenset) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < MAX_NODES for n in value
    ):
        raise ConfigError(f"{what} {value!r} is not a set of node numbers", "give e.g. (0, 1)")
    return tuple(sorted(set(value)))


@dataclass(frozen=True)
class MemPolicy:
    """A worker's memory policy (set_mempolicy): ``bind``, ``preferred``, ``interleave``
    over ``nodes``, or ``local`` (no nodes: allocate on the node the task runs on)."""

    mode: str
    nodes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MEMPOLICY_MODES:
            raise ConfigError(
                f"unknown memory policy {self.mode!r}", f"use one of {', '.join(MEMPOLICY_MODES)}"
            )
        object.__setattr__(self, "nodes", nodes("memory policy nodes", self.nodes))
        if self.mode == "local" and self.nodes:
            raise ConfigError("memory policy local takes no nodes", "drop the nodes")
        if self.mode != "local" and not self.nodes:
            raise ConfigError(f"memory policy {self.mode} needs nodes", "give e.g. nodes=(0,)")
        if self.mode == "preferred" and len(self.nodes) != 1:
            raise ConfigError(
                f"memory policy preferred takes one node, not {len(self.nodes)}",
                "give one node, or use interleave or bind for several",
            )

    def to_wire(self) -> list:
        return [self.mode, list(self.nodes)]


def validate(cgroup: str, given: dict[str, object]) -> dict[str, object]:
    """The controls that are set (not None), each checked; unknown names are refused."""
    out: dict[str, object] = {}
    for name, value in given.items():
        if name not in FILES:
            raise _bad(cgroup, f"no control {name!r}", f"use one of {', '.join(FILES)}")
        if value is None:
            continue
        if name == "cpu_max":
            out[name] = cpu_max(cgroup, value)
        elif name == "cpu_idle":
            if not isinstance(value, bool):
                raise _bad(cgroup, f"cpu_idle {value!r} is not True or False", "give a bool")
            out[name] = value
        elif name.startswith("memory_"):
            out[name] = memory_bytes(cgroup, name, value)
        elif name == "pids_max":
            out[name] = _bounded(cgroup, name, value, 1, 4_194_304, "give a number of tasks")
        elif name == "io_weight":
            out[name] = _bounded(cgroup, name, value, 1, 10_000, "give 1..10000 (100 default)")
        else:
            out[name] = nodes(f"cgroup {cgroup}: mems", value)
            if not out[name]:
                raise _bad(cgroup, "mems is empty", "give at least one node, or leave it None")
    order = [out.get(k) for k in ("memory_low", "memory_high", "memory_max")]
    known = [v for v in order if v is not None]
    if known != sorted(known):  # type: ignore[type-var]
        raise _bad(
            cgroup,
            "memory_low, memory_high and memory_max are not in rising order",
            "give low <= high <= max",
        )
    return out


def files(controls: dict[str, object]) -> dict[str, str]:
    """Validated controls -> {control file: the line the guest writes}, in writing order
    (a fractional cpu_max already turned into a quota by the plan compiler)."""
    out = {}
    for name, file in FILES.items():
        value = controls.get(name)
        if value is None:
            continue
        if name == "cpu_max":
            text = " ".join(map(str, value))  # type: ignore[call-overload]
        elif name == "cpu_idle":
            text = "1" if value else "0"
        elif name == "mems":
            text = ",".join(map(str, value))  # type: ignore[call-overload]
        else:
            text = str(value)
        out[file] = text
    return out
