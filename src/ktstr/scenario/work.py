"""What a worker does: a kind and its parameters, validated on the host.

The guest implements each kind (``ktstr.guest.workers``); this module
only names them, checks their parameters and group sizes, and serializes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ktstr.errors import ConfigError

# kind -> (parameter defaults, group size: workers per group, 1 = independent)
KINDS: dict[str, tuple[dict[str, object], int]] = {
    "spin": ({}, 1),
    "yield_heavy": ({}, 1),
    "mixed": ({"spin_us": 500}, 1),
    "bursty": ({"burst_ms": 10, "sleep_ms": 10}, 1),
    "pipe_pingpong": ({}, 2),
    "futex_pingpong": ({}, 2),
    "fan_out": ({"n": 3}, 0),  # group is n + 1 (one waker, n wakees)
    "cache_pressure": ({"kb": 1024, "stride": 64}, 1),
    "fork_exit": ({}, 1),
    "nice_sweep": ({}, 1),
    "affinity_churn": ({}, 1),
    "policy_churn": ({}, 1),
    "page_fault_churn": ({"kb": 1024}, 1),
    "mutex_contention": ({"n": 4}, 0),  # group is n
    "io_sync": ({"kb": 4, "path": "/tmp"}, 1),
    "sequence": ({"phases": []}, 1),
    # I/O on a declared disk (``disk`` is its index); see docs/disks.md.
    "io_seq_write": ({"disk": 0, "bs_kb": 64, "direct": True, "sync_every": 0, "overrun_kb": 0}, 1),
    "io_rand_read": ({"disk": 0, "bs_kb": 4, "direct": True, "overrun_kb": 0}, 1),
    "io_sync_write": ({"disk": 0, "bs_kb": 4, "direct": False}, 1),
    "io_convoy": ({"disk": 0, "bs_kb": 4, "hot_kb": 1024}, 1),
}
IO_KINDS = frozenset(k for k, (defaults, _) in KINDS.items() if "disk" in defaults)
# Integer parameters that may be 0 (every other integer must be positive).
_ZERO_OK = {"disk", "sync_every", "overrun_kb"}


@dataclass(frozen=True)
class WorkSpec:
    kind: str = "spin"
    params: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"unknown work kind {self.kind!r}", f"use one of {', '.join(sorted(KINDS))}"
            )
        defaults = KINDS[self.kind][0]
        unknown = set(self.params) - set(defaults)
        if unknown:
            raise ConfigError(
                f"work kind {self.kind} has no parameter {sorted(unknown)[0]!r}",
                f"its parameters are {', '.join(sorted(defaults)) or 'none'}",
            )
        for key, value in self.params.items():
            default = defaults[key]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(
                        f"work {self.kind}: {key}={value!r} must be True or False", "give a bool"
                    )
            elif isinstance(default, int):
                low = 0 if key in _ZERO_OK else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    raise ConfigError(
                        f"work {self.kind}: {key}={value!r} must be a whole number >= {low}",
                        f"give a whole number of {low} or more",
                    )
        if "overrun_kb" in defaults and int(self.value("overrun_kb")) % int(self.value("bs_kb")):
            raise ConfigError(
                f"work {self.kind}: overrun_kb={self.value('overrun_kb')} is not a whole number "
                f"of {self.value('bs_kb')} KiB blocks",
                "give an overrun that is a multiple of bs_kb",
            )
        if self.kind == "sequence":
            phases = self.params.get("phases") or []
            if not phases or not all(isinstance(p, WorkSpec) for p in phases):
                raise ConfigError(
                    "sequence needs a list of WorkSpec phases",
                    "write sequence([spin(), bursty(5, 5)])",
                )
            if any(KINDS[p.kind][1] != 1 or p.kind in IO_KINDS for p in phases):
                raise ConfigError(
                    "sequence phases must be independent CPU work kinds",
                    "leave pair, group and disk I/O kinds out of sequences",
                )

    @property
    def disk(self) -> int | None:
        """The index of the declared disk this work uses, if it is disk I/O."""
        return int(self.value("disk")) if self.kind in IO_KINDS else None  # type: ignore[arg-type]

    def value(self, key: str) -> object:
        return self.params.get(key, KINDS[self.kind][0][key])

    @property
    def group_size(self) -> int:
        size = KINDS[self.kind][1]
        if self.kind == "fan_out":
            return int(self.value("n")) + 1
        if self.kind == "mutex_contention":
            return int(self.value("n"))
        return size

    def check_count(self, workers: int, where: str) -> None:
        """Pair and group kinds need a worker count that is a multiple of the group."""
        size = self.group_size
        if size > 1 and workers % size:
            raise ConfigError(
                f"{where}: {workers} {self.kind} workers do not form groups of {size}",
                f"use a multiple of {size} workers",
            )

    def to_wire(self) -> dict[str, object]:
        params = {k: self.value(k) for k in KINDS[self.kind][0]}
        if self.kind == "sequence":
            params["phases"] = [p.to_wire() for p in self.params["phases"]]
        return {"kind": self.kind, "params": params}


def spin() -> WorkSpec:
    return WorkSpec("spin")


def yield_heavy() -> WorkSpec:
    return WorkSpec("yield_heavy")


def mixed(spin_us: int = 500) -> WorkSpec:
    return WorkSpec("mixed", {"spin_us": spin_us})


def bursty(burst_ms: int = 10, sleep_ms: int = 10) -> WorkSpec:
    return WorkSpec("bursty", {"burst_ms": burst_ms, "sleep_ms": sleep_ms})


def pipe_pingpong() -> WorkSpec:
    return WorkSpec("pipe_pingpong")


def futex_pingpong() -> WorkSpec:
    return WorkSpec("futex_pingpong")


def fan_out(n: int = 3) -> WorkSpec:
    return WorkSpec("fan_out", {"n": n})


def cache_pressure(kb: int = 1024, stride: int = 64) -> WorkSpec:
    return WorkSpec("cache_pressure", {"kb": kb, "stride": stride})


def fork_exit() -> WorkSpec:
    return WorkSpec("fork_exit")


def nice_sweep() -> WorkSpec:
    return WorkSpec("nice_sweep")


def affinity_churn() -> WorkSpec:
    return WorkSpec("affinity_churn")


def policy_churn() -> WorkSpec:
    return WorkSpec("policy_churn")


def page_fault_churn(kb: int = 1024) -> WorkSpec:
    return WorkSpec("page_fault_churn", {"kb": kb})


def mutex_contention(n: int = 4) -> WorkSpec:
    return WorkSpec("mutex_contention", {"n": n})


def io_sync(kb: int = 4, path: str = "/tmp") -> WorkSpec:
    """Write ``kb`` then fsync a file under ``path`` (tmpfs, or a disk's mount point)."""
    return WorkSpec("io_sync", {"kb": kb, "path": path})


def sequence(phases: list[WorkSpec]) -> WorkSpec:
    return WorkSpec("sequence", {"phases": list(phases)})


def io_seq_write(
    disk: int = 0, bs_kb: int = 64, direct: bool = True, sync_every: int = 0, overrun_kb: int = 0
) -> WorkSpec:
    """Sequential pattern writes over this worker's share of the disk, wrapping around.

    ``sync_every`` flushes after that many writes (0: only at the end);
    ``overrun_kb`` deliberately runs past the end of the disk by that much.
    """
    return WorkSpec(
        "io_seq_write",
        {
            "disk": disk,
            "bs_kb": bs_kb,
            "direct": direct,
            "sync_every": sync_every,
            "overrun_kb": overrun_kb,
        },
    )


def io_rand_read(
    disk: int = 0, bs_kb: int = 4, direct: bool = True, overrun_kb: int = 0
) -> WorkSpec:
    """Random block reads over the worker's share of the disk."""
    return WorkSpec(
        "io_rand_read", {"disk": disk, "bs_kb": bs_kb, "direct": direct, "overrun_kb": overrun_kb}
    )


def io_sync_write(disk: int = 0, bs_kb: int = 4, direct: bool = False) -> WorkSpec:
    """A pattern write then fdatasync, in a loop: an fsync storm."""
    return WorkSpec("io_sync_write", {"disk": disk, "bs_kb": bs_kb, "direct": direct})


def io_convoy(disk: int = 0, bs_kb: int = 4, hot_kb: int = 1024) -> WorkSpec:
    """Small direct writes and reads on one hot region shared by every convoy worker."""
    return WorkSpec("io_convoy", {"disk": disk, "bs_kb": bs_kb, "hot_kb": hot_kb})
