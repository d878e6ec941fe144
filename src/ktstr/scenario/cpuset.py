"""Which CPUs a cgroup may use, declared relative to the topology.

Specs are resolved on the host against the layout the guest must see
(the agent checks the guest really sees it before running anything), so
an impossible request fails before a VM boots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ktstr.errors import ConfigError


@dataclass(frozen=True)
class CpusetSpec:
    kind: str
    args: tuple = ()

    # Constructors, named as users write them.
    @classmethod
    def all(cls) -> CpusetSpec:
        return cls("all")

    @classmethod
    def llc(cls, index: int) -> CpusetSpec:
        return cls("llc", (index,))

    @classmethod
    def numa(cls, index: int) -> CpusetSpec:
        return cls("numa", (index,))

    @classmethod
    def range(cls, start_frac: float, end_frac: float) -> CpusetSpec:
        if not 0 <= start_frac < end_frac <= 1:
            raise ConfigError(
                f"cpuset range({start_frac}, {end_frac}) is not within 0..1 and increasing",
                "give 0 <= start < end <= 1",
            )
        return cls("range", (start_frac, end_frac))

    @classmethod
    def disjoint(cls, index: int, of: int) -> CpusetSpec:
        if not 0 <= index < of:
            raise ConfigError(
                f"cpuset disjoint({index}, of={of}) has no such partition",
                f"use an index from 0 to {of - 1}",
            )
        return cls("disjoint", (index, of))

    @classmethod
    def overlap(cls, index: int, of: int, frac: float) -> CpusetSpec:
        if not 0 <= index < of or not 0 <= frac < 1:
            raise ConfigError(
                f"cpuset overlap({index}, of={of}, frac={frac}) is out of range",
                "use 0 <= index < of and 0 <= frac < 1",
            )
        return cls("overlap", (index, of, frac))

    @classmethod
    def exact(cls, cpus: set[int] | list[int]) -> CpusetSpec:
        if not cpus:
            raise ConfigError("cpuset exact() needs at least one CPU", "name the CPUs")
        return cls("exact", (tuple(sorted(cpus)),))

    def describe(self) -> str:
        return f"{self.kind}({', '.join(map(str, self.args))})" if self.args else self.kind

    def resolve(self, layout: dict, usable: list[int] | None = None) -> list[int]:
        """The sorted CPU list for this spec on a topology layout."""
        cpus = sorted(usable) if usable is not None else list(range(layout["cpus"]))
        n = len(cpus)
        if self.kind == "all":
            return cpus
        if self.kind in ("llc", "numa"):
            groups = layout["llcs" if self.kind == "llc" else "numa_nodes"]
            (index,) = self.args
            if not 0 <= index < len(groups):
                raise ConfigError(
                    f"cpuset {self.describe()}: the topology has {len(groups)} "
                    f"{'LLCs' if self.kind == 'llc' else 'NUMA nodes'}",
                    "use a smaller index or a larger topology",
                )
            picked = [c for c in groups[index] if c in set(cpus)]
            if not picked:
                raise ConfigError(
                    f"cpuset {self.describe()} has no usable CPU", "choose another index"
                )
            return picked
        if self.kind == "range":
            start, end = self.args
            lo, hi = math.floor(start * n), math.ceil(end * n)
            if hi <= lo:
                raise ConfigError(
                    f"cpuset {self.describe()} selects no CPU of {n}", "widen the range"
                )
            return cpus[lo:hi]
        if self.kind in ("disjoint", "overlap"):
            index, of = self.args[0], self.args[1]
            if of > n:
                raise ConfigError(
                    f"{n} usable CPUs cannot hold {of} disjoint partitions",
                    "use fewer partitions or a larger topology",
                )
            lo, hi = index * n // of, (index + 1) * n // of
            if self.kind == "overlap":
                extra = math.ceil(self.args[2] * (hi - lo))
                lo, hi = max(0, lo - extra), min(n, hi + extra)
            return cpus[lo:hi]
        if self.kind == "exact":
            wanted = list(self.args[0])
            missing = [c for c in wanted if c not in set(cpus)]
            if missing:
                raise ConfigError(
                    f"cpuset exact names CPUs {missing} the topology lacks",
                    f"use CPUs from {cpus[0]} to {cpus[-1]}",
                )
            return wanted
        raise ConfigError(f"unknown cpuset kind {self.kind!r}", "use a CpusetSpec constructor")
