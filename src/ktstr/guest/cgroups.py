"""cgroupfs: the scenario's cgroups under ``/sys/fs/cgroup/ktstr`` and their control files.

Paths given to these functions are relative to ``CG_BASE`` (``cg_0``,
``cg_0/child``), as the plan names them.  The module reads ``CG_BASE``
at every call, so a directory can stand in for cgroupfs.
"""

from __future__ import annotations

import os

from ktstr.guest import topo

CG_ROOT = "/sys/fs/cgroup"
CG_BASE = f"{CG_ROOT}/ktstr"
CONTROLLERS = ("cpu", "cpuset")  # enabled for the scenario's cgroups when available
# The control files a plan may set (besides cpu.weight and cpuset.cpus); the controller
# each needs is the part before the dot, enabled along the path as it is first needed.
CONTROL_FILES = (
    "cpuset.mems",
    "cpu.max",
    "cpu.idle",
    "memory.max",
    "memory.high",
    "memory.low",
    "pids.max",
    "io.weight",
)


def write(path: str, value: str) -> None:
    """Write a control file as ``echo`` would: an empty value still reaches the kernel."""
    with open(path, "w") as f:
        f.write(value + "\n")


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def cpulist(cpus: list[int] | None) -> str:
    """``[0, 2]`` -> ``"0,2"``; no CPUs -> ``""``, which clears a cpuset."""
    return ",".join(map(str, cpus)) if cpus else ""


def path(rel: str) -> str:
    """The directory of a scenario cgroup."""
    return f"{CG_BASE}/{rel}"


def enable_children(directory: str, wanted: tuple[str, ...] = CONTROLLERS) -> None:
    """Give ``directory``'s children the controllers of ``wanted`` it has."""
    available = read(f"{directory}/cgroup.controllers").split()
    wanted = tuple(c for c in wanted if c in available)
    if wanted:
        write(f"{directory}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))


def create(
    rel: str, cpus: list[int] | None, weight: int, controls: dict[str, str] | None = None
) -> dict[str, str]:
    """Make a cgroup (its parent's controllers enabled first) with its cpuset, weight and
    controls; returns the controls as the kernel reads them back."""
    directory = path(rel)
    enable_children(os.path.dirname(directory))
    os.mkdir(directory)
    if cpus:
        set_cpus(rel, cpus)
    if weight:
        set_weight(rel, weight)
    return set_controls(rel, controls or {})


def set_controls(rel: str, controls: dict[str, str]) -> dict[str, str]:
    """Write control files in the plan's order, enabling each one's controller from the
    scenario's base down to the cgroup's parent; returns each as read back."""
    for name in controls:
        if name not in CONTROL_FILES:
            raise ValueError(f"control file {name!r} is not one a plan may set")
    needed = tuple(dict.fromkeys(name.partition(".")[0] for name in controls))
    if needed:
        parent, chain = os.path.dirname(rel), [CG_BASE]
        while parent:
            chain.insert(1, path(parent))
            parent = os.path.dirname(parent)
        for directory in chain:
            enable_children(directory, needed)
    for name, value in controls.items():
        write(f"{path(rel)}/{name}", value)
    return {name: read(f"{path(rel)}/{name}") for name in controls}


def lift_quotas(rel: str) -> None:
    """cpu.max back to ``max`` on a cgroup and its ancestors under the base, once the
    scenario's time is over: its workers need CPU to write their results (under
    emulation, eight workers held to half a CPU could not within the stop grace)."""
    while rel:
        try:
            if not read(f"{path(rel)}/cpu.max").startswith("max"):
                write(f"{path(rel)}/cpu.max", "max")
        except OSError:
            pass  # removed, or no cpu controller
        rel = os.path.dirname(rel)


def throttling() -> dict[str, list[int]]:
    """For the calling task's cgroup and each ancestor under the base that had a cpu.max
    quota (bandwidth periods counted): [periods, throttled periods, throttled us] from
    cpu.stat, so the host knows whether the kernel (or the scheduler) enforced it."""
    with open("/proc/self/cgroup") as f:
        rel = f.read().strip().rpartition(":")[2].lstrip("/")
    base = CG_BASE[len(CG_ROOT) + 1 :]
    rel = rel[len(base) + 1 :] if rel.startswith(base + "/") else ""
    out = {}
    keys = ("nr_periods", "nr_throttled", "throttled_usec")
    while rel:
        stat = dict(line.split() for line in read(f"{path(rel)}/cpu.stat").splitlines())
        if int(stat.get("nr_periods", 0)):
            out[rel] = [int(stat.get(k, 0)) for k in keys]
        rel = os.path.dirname(rel)
    return out


def set_cpus(rel: str, cpus: list[int] | None) -> None:
    write(f"{path(rel)}/cpuset.cpus", cpulist(cpus))


def set_weight(rel: str, weight: int) -> None:
    write(f"{path(rel)}/cpu.weight", str(weight))


def set_frozen(rel: str, frozen: bool) -> None:
    write(f"{path(rel)}/cgroup.freeze", "1" if frozen else "0")


def effective(rel: str) -> list[int]:
    """The CPUs the kernel really gives the cgroup (its cpuset within its parent's)."""
    return topo.parse_cpulist(read(f"{path(rel)}/cpuset.cpus.effective"))


def enter(rel: str, pid: int) -> None:
    """Move a task into the cgroup; pid 0 is the caller."""
    write(f"{path(rel)}/cgroup.procs", str(pid))


def move_tasks(src: str, dst: str) -> None:
    """Move every task of ``src`` into ``dst``, one write per task as cgroupfs wants."""
    procs = f"{path(dst)}/cgroup.procs"
    for pid in read(f"{path(src)}/cgroup.procs").split():
        write(procs, pid)


def remove(rel: str) -> None:
    """Remove a cgroup and its descendants, deepest first (each must be empty)."""
    tree = [root for root, _, _ in os.walk(path(rel))]
    for directory in sorted(tree, key=len, reverse=True):
        os.rmdir(directory)
