"""CPU topology as code: ``Topology(numa_nodes, llcs, cores_per_llc, threads_per_core)``.

The guest must see exactly the declared NUMA nodes, LLC groups and SMT
siblings on every QEMU a user has.  Splitting one socket into several
last-level caches does not work on QEMU under TCG (neither ``dies`` nor
``modules`` changes the L3 the guest sees), so each LLC is its own
socket and each NUMA node holds ``llcs / numa_nodes`` sockets.  The
guest therefore reports one physical package per LLC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ktstr.errors import ConfigError
from ktstr.host import positive_int_env

DEFAULT_MAX_CPUS = 252
_NAME = re.compile(r"^(\d+)n(\d+)l(\d+)c(\d+)t$")
# Distance between two different NUMA nodes (10 is local, as in ACPI SLIT).
REMOTE_DISTANCE = 20


def max_cpus() -> int:
    """Largest vCPU count a topology may have (``KTSTR_MAX_CPUS``)."""
    return positive_int_env("KTSTR_MAX_CPUS", DEFAULT_MAX_CPUS)


@dataclass(frozen=True)
class Topology:
    """A VM's CPU layout; ``memory_mib`` defaults to a size that fits the CPU count."""

    numa_nodes: int
    llcs: int
    cores_per_llc: int
    threads_per_core: int
    memory_mib: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def parse(cls, text: str, memory_mib: int | None = None) -> Topology:
        """Parse the ``1n2l4c2t`` form."""
        match = _NAME.match(text.strip())
        if not match:
            raise ConfigError(
                f"topology {text!r} is not of the form <N>n<L>l<C>c<T>t",
                "write it like 1n2l4c2t (NUMA nodes, LLCs, cores per LLC, threads per core)",
            )
        n, l_, c, t = (int(g) for g in match.groups())
        return cls(n, l_, c, t, memory_mib=memory_mib)

    @property
    def name(self) -> str:
        return f"{self.numa_nodes}n{self.llcs}l{self.cores_per_llc}c{self.threads_per_core}t"

    def __str__(self) -> str:
        return self.name

    @property
    def cpus(self) -> int:
        return self.llcs * self.cores_per_llc * self.threads_per_core

    @property
    def llcs_per_node(self) -> int:
        return self.llcs // self.numa_nodes

    @property
    def cpus_per_llc(self) -> int:
        return self.cores_per_llc * self.threads_per_core

    @property
    def memory(self) -> int:
        """Guest RAM in MiB: the explicit value, or 512 MiB plus 16 MiB per vCPU."""
        if self.memory_mib is not None:
            return self.memory_mib
        raw = 512 + 16 * self.cpus
        step = 2 * self.numa_nodes
        return -(-raw // step) * step

    def validate(self) -> None:
        counts = {
            "numa_nodes": self.numa_nodes,
            "llcs": self.llcs,
            "cores_per_llc": self.cores_per_llc,
            "threads_per_core": self.threads_per_core,
        }
        for label, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"topology {label}={value!r} must be an integer >= 1",
                    "give every count as a positive integer",
                )
        if self.llcs % self.numa_nodes:
            raise ConfigError(
                f"topology {self.name}: {self.llcs} LLCs cannot be split evenly "
                f"over {self.numa_nodes} NUMA nodes",
                "make the LLC count a multiple of the NUMA node count",
            )
        limit = max_cpus()
        if self.cpus > limit:
            raise ConfigError(
                f"topology {self.name} has {self.cpus} vCPUs, more than the maximum {limit}",
                "use fewer LLCs, cores or threads, or raise KTSTR_MAX_CPUS",
            )
        if self.memory_mib is not None and self.memory_mib < 64 * self.numa_nodes:
            raise ConfigError(
                f"topology {self.name}: {self.memory_mib} MiB is too little memory "
                f"for {self.numa_nodes} NUMA nodes",
                "give at least 64 MiB per NUMA node",
            )

    # The layout the guest must observe, with QEMU's CPU numbering
    # (threads fastest, then cores, then sockets).

    def llc_groups(self) -> list[list[int]]:
        per = self.cpus_per_llc
        return [list(range(i * per, (i + 1) * per)) for i in range(self.llcs)]

    def node_groups(self) -> list[list[int]]:
        per = self.cpus_per_llc * self.llcs_per_node
        return [list(range(i * per, (i + 1) * per)) for i in range(self.numa_nodes)]

    def smt_groups(self) -> list[list[int]]:
        t = self.threads_per_core
        return [list(range(i * t, (i + 1) * t)) for i in range(self.cpus // t)]

    def node_memory(self) -> list[int]:
        """MiB per NUMA node; the remainder goes to node 0."""
        share = self.memory // self.numa_nodes
        sizes = [share] * self.numa_nodes
        sizes[0] += self.memory - share * self.numa_nodes
        return sizes

    def layout(self) -> dict[str, object]:
        """The wire/JSON form compared against what the guest reports."""
        return {
            "cpus": self.cpus,
            "numa_nodes": self.node_groups(),
            "llcs": self.llc_groups(),
            "smt_siblings": self.smt_groups(),
        }

    def qemu_args(self) -> list[str]:
        """``-smp``/``-m``/``-numa`` arguments; RAM is shared memfd per node."""
        args = [
            "-smp",
            f"{self.cpus},sockets={self.llcs},cores={self.cores_per_llc},"
            f"threads={self.threads_per_core}",
            "-m",
            str(self.memory),
        ]
        for node, (cpus, mib) in enumerate(
            zip(self.node_groups(), self.node_memory(), strict=True)
        ):
            args += [
                "-object",
                f"memory-backend-memfd,id=mem{node},size={mib}M,share=on",
                "-numa",
                f"node,nodeid={node},cpus={cpus[0]}-{cpus[-1]},memdev=mem{node}",
            ]
        for src in range(self.numa_nodes):
            for dst in range(src + 1, self.numa_nodes):
                args += ["-numa", f"dist,src={src},dst={dst},val={REMOTE_DISTANCE}"]
        return args


def as_topology(value: Topology | str) -> Topology:
    """Accept a Topology or its string name."""
    return value if isinstance(value, Topology) else Topology.parse(value)
