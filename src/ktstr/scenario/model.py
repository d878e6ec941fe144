"""A scheduler test as data: cgroups, their CPUs and workers, steps over time, checks.

All classes are frozen dataclasses; ``ktstr.scenario.plan`` turns a
Scenario and a topology into the concrete plan the guest executes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ktstr.checks.thresholds import validate
from ktstr.disk import Disk, check_disks
from ktstr.errors import ConfigError
from ktstr.payloads.model import Payload
from ktstr.scenario import controls
from ktstr.scenario.controls import MemPolicy
from ktstr.scenario.cpuset import CpusetSpec
from ktstr.scenario.work import WorkSpec, spin


@dataclass(frozen=True)
class Policy:
    """A scheduling policy: normal, batch, idle, fifo(p), rr(p), ext or deadline.

    ``ext`` (SCHED_EXT) is for schedulers that take only the tasks that ask for them
    (switch-partial); ``deadline`` (SCHED_DEADLINE) runs ``runtime_us`` of every
    ``period_us`` within ``deadline_us`` of its start, above every other class.
    """

    name: str = "normal"
    priority: int = 0
    runtime_us: int = 0
    deadline_us: int = 0
    period_us: int = 0

    def __post_init__(self) -> None:
        names = ("normal", "batch", "idle", "fifo", "rr", "ext", "deadline")
        if self.name not in names:
            raise ConfigError(f"unknown policy {self.name!r}", f"use one of {', '.join(names)}")
        realtime = self.name in ("fifo", "rr")
        if realtime and not 1 <= self.priority <= 99:
            raise ConfigError(
                f"{self.name} priority {self.priority} is outside 1..99",
                "give a real-time priority from 1 to 99",
            )
        if not realtime and self.priority:
            raise ConfigError(f"policy {self.name} takes no priority", "drop the priority")
        times = (self.runtime_us, self.deadline_us, self.period_us)
        if self.name == "deadline":
            if not 2 <= self.runtime_us <= self.deadline_us <= self.period_us:
                raise ConfigError(
                    f"deadline policy runtime {self.runtime_us} us, deadline "
                    f"{self.deadline_us} us, period {self.period_us} us",
                    "give 2 <= runtime <= deadline <= period, in microseconds",
                )
        elif any(times):
            raise ConfigError(f"policy {self.name} takes no runtime, deadline or period")

    def to_wire(self) -> list:
        """[name, priority, runtime ns, deadline ns, period ns] as the guest applies it."""
        ns = [t * 1000 for t in (self.runtime_us, self.deadline_us, self.period_us)]
        return [self.name, self.priority, *ns]


NORMAL, BATCH, IDLE = Policy("normal"), Policy("batch"), Policy("idle")
EXT = Policy("ext")


def Deadline(runtime_us: int, deadline_us: int, period_us: int | None = None) -> Policy:
    """SCHED_DEADLINE: ``runtime_us`` of CPU every ``period_us`` (default: the deadline)."""
    return Policy("deadline", 0, runtime_us, deadline_us, period_us or deadline_us)


def Fifo(priority: int) -> Policy:
    return Policy("fifo", priority)


def RR(priority: int) -> Policy:
    return Policy("rr", priority)


@dataclass(frozen=True)
class CgroupDef:
    """A cgroup, its CPUs and its workers; ``children`` nest below it."""

    name: str
    workers: int = 2
    work: WorkSpec = field(default_factory=spin)
    cpuset: CpusetSpec | None = None
    weight: int | None = None
    nice: int = 0
    policy: Policy = NORMAL
    affinity: CpusetSpec | None = None
    children: tuple[CgroupDef, ...] = ()
    workers_pct: float | None = None  # a fraction of the cpuset's CPUs, instead of a count
    # cgroup v2 controls (scenario/controls.py); None leaves the kernel's default.
    # quota_us, (quota_us, period_us), or a float: that fraction of the CPUs it may use
    cpu_max: int | tuple[int, int] | float | None = None
    cpu_idle: bool | None = None
    memory_max: int | str | None = None  # bytes, or "64M"
    memory_high: int | str | None = None
    memory_low: int | str | None = None
    pids_max: int | None = None
    io_weight: int | None = None
    mems: tuple[int, ...] | None = None  # cpuset.mems: the NUMA nodes its memory may use
    mempolicy: MemPolicy | None = None  # every worker's set_mempolicy
    # Programs started in the cgroup when it is added (ktstr.payloads), next to its workers.
    payload: Payload | Sequence[Payload] | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(
                f"cgroup name {self.name!r} is not a plain name", "use letters, digits, '_' and '-'"
            )
        if self.weight is not None and not 1 <= self.weight <= 10000:
            raise ConfigError(
                f"cgroup {self.name}: cpu.weight {self.weight} is outside 1..10000",
                "give a weight from 1 to 10000 (100 is the default)",
            )
        if not -20 <= self.nice <= 19:
            raise ConfigError(
                f"cgroup {self.name}: nice {self.nice} is outside -20..19",
                "give a nice value from -20 to 19",
            )
        if self.workers < 0:
            raise ConfigError(
                f"cgroup {self.name}: workers={self.workers} is negative", "give 0 or more workers"
            )
        if self.workers_pct is not None and not 0 < self.workers_pct <= 4:
            raise ConfigError(
                f"cgroup {self.name}: workers_pct={self.workers_pct} is out of range",
                "give a fraction above 0 (1.0 = one worker per CPU)",
            )
        if self.children and (self.workers or self.workers_pct):
            raise ConfigError(
                f"cgroup {self.name} has children, so it cannot hold workers itself "
                "(cgroup v2 keeps processes out of inner cgroups with controllers)",
                "move its workers into a child cgroup",
            )
        object.__setattr__(self, "children", tuple(self.children))
        payloads = () if self.payload is None else self.payload
        payloads = (payloads,) if isinstance(payloads, Payload) else tuple(payloads)
        if not all(isinstance(p, Payload) for p in payloads):
            raise ConfigError(
                f"cgroup {self.name}: payload is not a Payload", "give a Payload or a list of them"
            )
        if payloads and self.children:
            raise ConfigError(
                f"cgroup {self.name} has children, so it cannot run a payload itself",
                "run the payload in a child cgroup",
            )
        object.__setattr__(self, "payload", payloads)
        given = {name: getattr(self, name) for name in controls.FILES}
        for name, value in controls.validate(self.name, given).items():
            object.__setattr__(self, name, value)
        if self.mempolicy is not None and not isinstance(self.mempolicy, MemPolicy):
            raise ConfigError(
                f"cgroup {self.name}: mempolicy {self.mempolicy!r} is not a MemPolicy",
                "write mempolicy=MemPolicy('bind', (0,))",
            )


@dataclass(frozen=True)
class Op:
    """One change to the running scenario (see the constructors)."""

    kind: str
    target: str = ""
    args: tuple = ()

    @staticmethod
    def add_cgroup(cgroup: CgroupDef, parent: str = "") -> Op:
        return Op("add_cgroup", parent, (cgroup,))

    @staticmethod
    def remove_cgroup(name: str) -> Op:
        return Op("remove_cgroup", name)

    @staticmethod
    def set_cpuset(name: str, spec: CpusetSpec) -> Op:
        return Op("set_cpuset", name, (spec,))

    @staticmethod
    def clear_cpuset(name: str) -> Op:
        return Op("clear_cpuset", name)

    @staticmethod
    def swap_cpusets(a: str, b: str) -> Op:
        return Op("swap_cpusets", a, (b,))

    @staticmethod
    def set_weight(name: str, weight: int) -> Op:
        return Op("set_weight", name, (weight,))

    @staticmethod
    def set_controls(name: str, **values: object) -> Op:
        """Change cgroup v2 controls while the scenario runs, by CgroupDef's keywords:
        ``Op.set_controls("cg_0", cpu_max=(25_000, 100_000), pids_max=64)``."""
        checked = controls.validate(name, values)
        if not checked:
            raise ConfigError(f"set_controls on {name} sets nothing", "give at least one control")
        return Op("set_controls", name, tuple(sorted(checked.items())))

    @staticmethod
    def set_cpu_max(name: str, quota_us: int, period_us: int = controls.DEFAULT_PERIOD_US) -> Op:
        """Limit the cgroup to ``quota_us`` of CPU time every ``period_us`` (cpu.max)."""
        return Op.set_controls(name, cpu_max=(quota_us, period_us))

    @staticmethod
    def run_payload(cgroup: str, payload: Payload, name: str | None = None) -> Op:
        """Start ``payload`` in the cgroup; ``name`` tells two runs of one payload apart."""
        if not isinstance(payload, Payload):
            raise ConfigError(f"run_payload on {cgroup}: {payload!r} is not a Payload")
        return Op("run_payload", cgroup, (payload, name))

    @staticmethod
    def wait_payload(name: str, cgroup: str = "") -> Op:
        """Hold every later op until the payload ``name`` (in ``cgroup``) ends."""
        return Op("wait_payload", cgroup, (name,))

    @staticmethod
    def kill_payload(name: str, cgroup: str = "") -> Op:
        """Stop the payload ``name`` (in ``cgroup``) with SIGTERM to everything it started."""
        return Op("kill_payload", cgroup, (name,))

    @staticmethod
    def spawn_workers(name: str, n: int, work: WorkSpec | None = None) -> Op:
        return Op("spawn_workers", name, (n, work))

    @staticmethod
    def stop_workers(name: str, n: int) -> Op:
        return Op("stop_workers", name, (n,))

    @staticmethod
    def move_tasks(src: str, dst: str) -> Op:
        return Op("move_tasks", src, (dst,))

    @staticmethod
    def set_affinity(name: str, spec: CpusetSpec) -> Op:
        return Op("set_affinity", name, (spec,))

    @staticmethod
    def freeze(name: str) -> Op:
        return Op("freeze", name)

    @staticmethod
    def unfreeze(name: str) -> Op:
        return Op("unfreeze", name)

    @staticmethod
    def fixture_knob(name: str, value: object) -> Op:
        """Set a knob of the fixture scheduler scx_ktstr while it runs (its control file):
        e.g. ``Op.fixture_knob("pile", 0)`` at a step piles every task on CPU 0 from then on,
        ``Op.fixture_knob("pile", "off")`` stops it.  Only with ``--scheduler scx_ktstr``."""
        from ktstr.fixture_sched import KNOBS, NAME

        if name not in KNOBS:
            raise ConfigError(f"{NAME} has no knob {name!r}", f"use one of {', '.join(KNOBS)}")
        text = "on" if value is True else "off" if value is False else str(value)
        if not text or any(c in text for c in "\n\r=") or len(text) > 200:
            raise ConfigError(f"knob {name}: value {text!r} is not one line", "give a plain value")
        return Op("fixture_knob", "", (name, text))

    # Deliberate faults, to show the checks catch them.
    @staticmethod
    def debug_stop_worker(name: str, index: int, ms: int) -> Op:
        """SIGSTOP one worker for ``ms`` milliseconds (not_stuck must notice)."""
        return Op("debug_stop_worker", name, (index, ms))

    @staticmethod
    def debug_kernel_crash() -> Op:
        """Crash the guest kernel (sysrq 'c'): kernel_health must report the panic."""
        return Op("debug_kernel_crash")

    @staticmethod
    def debug_freeze_fs(disk: int, ms: int, hung_task_timeout_s: int = 0) -> Op:
        """Freeze a disk's filesystem for ``ms``: writers on it block in D state.

        With ``hung_task_timeout_s`` the kernel's hung-task detector is set to
        that many seconds first, so it reports the blocked writers (kernel_health).
        """
        return Op("debug_freeze_fs", "", (disk, ms, hung_task_timeout_s))

    @staticmethod
    def debug_escape_cpuset(name: str, index: int) -> Op:
        """Move one worker out of its cgroup onto a CPU outside its cpuset (isolation)."""
        return Op("debug_escape_cpuset", name, (index,))


@dataclass(frozen=True)
class HoldSpec:
    """How long a step lasts: a fraction of the duration, fixed seconds, or a loop."""

    frac: float | None = None
    seconds: float | None = None
    loop_interval_s: float | None = None  # repeat the step's ops at this interval

    def __post_init__(self) -> None:
        if (self.frac is None) == (self.seconds is None):
            raise ConfigError(
                "a HoldSpec needs exactly one of frac and seconds",
                "write HoldSpec(frac=0.5) or HoldSpec(seconds=3)",
            )
        if self.frac is not None and not 0 < self.frac <= 1:
            raise ConfigError(f"hold fraction {self.frac} is outside (0, 1]", "give 0 < frac <= 1")
        if self.seconds is not None and self.seconds <= 0:
            raise ConfigError(f"hold of {self.seconds} s is not positive", "give seconds > 0")
        if self.loop_interval_s is not None and self.loop_interval_s <= 0:
            raise ConfigError("a loop interval must be positive", "give seconds > 0")

    def length(self, duration_s: float) -> float:
        return self.frac * duration_s if self.frac is not None else float(self.seconds)


@dataclass(frozen=True)
class Step:
    ops: Sequence[Op] = ()
    hold: HoldSpec = field(default_factory=lambda: HoldSpec(frac=1.0))


@dataclass(frozen=True)
class Checks:
    """Which checks judge the run and their thresholds (defaults: ``ktstr.checks``)."""

    not_stuck: bool = True
    fairness: bool = True
    isolation: bool = True
    work_conservation: bool = True
    imbalance: bool = True
    kernel_health: bool = True
    disk_errors: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)  # "check.key" -> value
    # Regexes of console lines kernel_health must not count (a known, harmless warning).
    kernel_allow: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", validate(dict(self.thresholds)))
        object.__setattr__(self, "kernel_allow", tuple(self.kernel_allow))
        for pattern in self.kernel_allow:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(
                    f"kernel_allow {pattern!r} is not a valid regex: {err}", "fix the pattern"
                ) from None


@dataclass(frozen=True)
class Requires:
    """Topologies a scenario can run on; others make it ``skip``."""

    min_llcs: int = 1
    min_cpus: int = 1
    min_numa_nodes: int = 1

    def reason(self, layout: dict) -> str | None:
        if len(layout["llcs"]) < self.min_llcs:
            return f"needs at least {self.min_llcs} LLCs, the topology has {len(layout['llcs'])}"
        if layout["cpus"] < self.min_cpus:
            return f"needs at least {self.min_cpus} CPUs, the topology has {layout['cpus']}"
        if len(layout["numa_nodes"]) < self.min_numa_nodes:
            return f"needs at least {self.min_numa_nodes} NUMA nodes"
        return None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: Sequence[Step]
    duration_s: float = 12.0
    checks: Checks = field(default_factory=Checks)
    requires: Requires = field(default_factory=Requires)
    disks: Sequence[Disk] = ()  # virtio disks, /dev/vda onwards; I/O work names them by index
    # Host files or directories packed into the guest as /include-files/<name>.
    include_files: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "disks", check_disks(self.disks))
        if isinstance(self.include_files, (str, bytes)):
            raise ConfigError(
                f"scenario {self.name}: include_files is one string",
                "give a list of paths, e.g. include_files=['conf.json']",
            )
        object.__setattr__(self, "include_files", tuple(map(str, self.include_files)))
        if not self.steps:
            raise ConfigError(f"scenario {self.name} has no steps", "give at least one Step")
        if self.duration_s <= 0:
            raise ConfigError(
                f"scenario {self.name}: duration {self.duration_s} s", "give a positive duration"
            )


def run_defs(
    defs: Sequence[CgroupDef],
    name: str = "custom",
    duration_s: float = 12.0,
    checks: Checks | None = None,
) -> Scenario:
    """One step that creates ``defs`` and holds them for the whole duration."""
    return Scenario(
        name,
        "cgroups held for the whole run",
        [Step([Op.add_cgroup(d) for d in defs])],
        duration_s,
        checks or Checks(),
    )


def run_steps(
    steps: Sequence[Step],
    name: str = "custom",
    duration_s: float = 12.0,
    checks: Checks | None = None,
) -> Scenario:
    return Scenario(name, "custom steps", list(steps), duration_s, checks or Checks())
