"""Named topology presets for the gauntlet, and the expansion of one test across them.

The gauntlet runs a test on many topologies (and scheduler flag profiles)
because a scheduler that passes on one can fail on another: odd LLC
counts, SMT, several NUMA nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ktstr.errors import ConfigError
from ktstr.topology import Topology

PRESETS: dict[str, str] = {
    "tiny-1llc": "1n1l4c1t",
    "tiny-2llc": "1n2l2c1t",
    "tiny-smt": "1n1l2c2t",
    "odd-3llc": "1n3l3c1t",
    "odd-5llc": "1n5l3c1t",
    "odd-7llc": "1n7l2c1t",
    "smt-2llc": "1n2l2c2t",
    "smt-3llc": "1n3l2c2t",
    "medium-4llc": "1n4l4c2t",
    "medium-8llc": "1n8l4c1t",
    "numa2-2llc": "2n2l4c1t",
    "numa2-4llc": "2n4l4c1t",
    "numa2-smt": "2n4l2c2t",
    "numa4-4llc": "4n4l2c1t",
    "numa4-8llc": "4n8l4c1t",
    "numa4-smt": "4n8l2c2t",
    "large-6llc": "1n6l8c2t",
    "large-12llc": "2n12l8c1t",
    "wide-15llc": "1n15l4c2t",
    "numa2-14llc": "2n14l6c1t",
    "max-cpu": "1n14l9c2t",
}

# The gauntlet's default selection stops here to stay affordable under emulation; a preset
# named explicitly, or --all-presets, is not capped.
DEFAULT_MAX_CPUS = 16


def preset(name: str) -> Topology:
    if name not in PRESETS:
        raise ConfigError(
            f"no topology preset named {name!r}", "run 'ktstr topo presets' to list them"
        )
    return Topology.parse(PRESETS[name])


@dataclass
class Constraints:
    """The topologies a test accepts; lives here so the gauntlet needs no pytest."""

    min_cpus: int = 1
    max_cpus: int | None = None
    min_llcs: int = 1
    max_llcs: int | None = None
    min_numa_nodes: int = 1
    max_numa_nodes: int | None = None
    requires_smt: bool = False

    def reason(self, t: Topology) -> str | None:
        """Why ``t`` is excluded, as one sentence, or None when the test accepts it."""
        checks = [
            (t.cpus < self.min_cpus, f"needs at least {self.min_cpus} CPUs"),
            (
                self.max_cpus is not None and t.cpus > self.max_cpus,
                f"allows at most {self.max_cpus} CPUs",
            ),
            (t.llcs < self.min_llcs, f"needs at least {self.min_llcs} LLCs"),
            (
                self.max_llcs is not None and t.llcs > self.max_llcs,
                f"allows at most {self.max_llcs} LLCs",
            ),
            (t.numa_nodes < self.min_numa_nodes, f"needs {self.min_numa_nodes}+ NUMA nodes"),
            (
                self.max_numa_nodes is not None and t.numa_nodes > self.max_numa_nodes,
                f"allows at most {self.max_numa_nodes} NUMA nodes",
            ),
            (self.requires_smt and t.threads_per_core < 2, "needs SMT"),
        ]
        for failed, text in checks:
            if failed:
                return f"topology {t.name}: the test {text}"
        return None


@dataclass(frozen=True)
class Variant:
    """One cell of a gauntlet: a preset and a scheduler profile."""

    preset: str
    topology: str
    profile: str | None  # None under EEVDF

    @property
    def id(self) -> str:
        return self.preset if self.profile is None else f"{self.preset}/{self.profile}"

    @property
    def cost(self) -> int:
        """A relative cost estimate: vCPUs dominate a TCG run's time."""
        return Topology.parse(self.topology).cpus + 8


def expand(
    accept: Callable[[Topology], str | None],
    profiles: list[str] | None,
    names: list[str] | None = None,
) -> list[Variant]:
    """Presets the constraints accept (``accept(topology) -> reason | None``) × profiles."""
    out = []
    for name in names or list(PRESETS):
        topo = preset(name)
        if accept(topo) is None:
            for profile in profiles or [None]:
                out.append(Variant(name, topo.name, profile))
    return out


@dataclass
class Selection:
    """The variants a gauntlet runs, and every preset it leaves out with why."""

    variants: list[Variant]
    left_out: list[tuple[str, str]]  # (preset, reason): the constraints or this host refuse it
    capped: list[str]  # presets the default selection's vCPU cap left out


def select(
    accept: Callable[[Topology], str | None],
    profiles: list[str] | None,
    names: list[str] | None = None,
    all_presets: bool = False,
    cap: int = DEFAULT_MAX_CPUS,
) -> Selection:
    """Presets × profiles: the ``names`` given, else every preset (up to ``cap`` vCPUs
    unless ``all_presets``).

    The cap keeps the default selection affordable; a preset the user named is
    what they asked for, so it is never capped.  A preset ``accept`` refuses is
    returned with its reason, never dropped silently.
    """
    capped: list[str] = []
    if names:
        candidates = list(dict.fromkeys(names))
    else:
        candidates = []
        for name in PRESETS:
            if all_presets or preset(name).cpus <= cap:
                candidates.append(name)
            else:
                capped.append(name)
    variants: list[Variant] = []
    left_out: list[tuple[str, str]] = []
    for name in candidates:
        topo = preset(name)
        reason = accept(topo)
        if reason is not None:
            left_out.append((name, reason))
            continue
        variants += [Variant(name, topo.name, profile) for profile in profiles or [None]]
    return Selection(variants, left_out, capped)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, _, count = text.partition("/")
        i, n = int(index), int(count)
    except ValueError:
        raise ConfigError(f"shard {text!r} is not of the form i/N", "write e.g. 1/4") from None
    if not 1 <= i <= n:
        raise ConfigError(f"shard {text}: i must be between 1 and N", "write e.g. 1/4")
    return i, n


def shard(variants: list[Variant], index: int, count: int) -> list[Variant]:
    """Shard ``index`` (1-based) of ``count``: deterministic, disjoint, balanced by cost.

    Longest-processing-time first: variants sorted by cost (then id) go one by one to
    the shard with the least total so far.
    """
    loads = [0] * count
    owner: dict[str, int] = {}
    for v in sorted(variants, key=lambda v: (-v.cost, v.id)):
        target = min(range(count), key=lambda s: (loads[s], s))
        loads[target] += v.cost
        owner[v.id] = target
    return [v for v in variants if owner[v.id] == index - 1]
