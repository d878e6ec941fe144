"""Compile a Scenario for one topology into the concrete plan the guest runs.

Everything that can be wrong with a scenario (a cpuset that does not fit,
a group size that does not divide, an unknown cgroup) is found here,
before a VM boots.  The plan names cgroups by path, CPUs by number and
workers by id, so the guest only executes and records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ktstr import wire
from ktstr.disk import Disk
from ktstr.errors import ConfigError
from ktstr.scenario import controls
from ktstr.scenario.model import CgroupDef, Op, Scenario
from ktstr.scenario.payload_plan import OPS as PAYLOAD_OPS
from ktstr.scenario.payload_plan import PayloadPlanner
from ktstr.scenario.work import WorkSpec
from ktstr.topology import Topology

# Per-CPU samples (utilization, schedstat run and queue time): at least four a second, so
# work_conservation and imbalance see a CPU idling next to a queue within a window.
SAMPLE_INTERVAL_S = 0.25
MIN_LOOP_INTERVAL_S = 0.05
MAX_ROUNDS = 2000  # rounds of ops in a whole plan, loops unrolled
STOP_GRACE_S = 3.0  # after the deadline, before SIGKILL
MAX_STOP_GRACE_S = 60.0
# More time to stop while workers are still exiting: at the end every worker wants a CPU
# at once to write its result, and under emulation the last can wait seconds for a turn.
EXIT_PATIENCE_S = 20.0


@dataclass
class _Cgroup:
    path: str
    cpus: list[int] | None  # None: inherits its parent's
    weight: int | None
    workers: list[int] = field(default_factory=list)
    mems: tuple[int, ...] | None = None  # None: inherits its parent's
    pids_max: int | None = None


class _Compiler:
    def __init__(self, layout: dict, disks: tuple[Disk, ...]) -> None:
        self.layout = layout
        self.disks = disks
        self.cgroups: dict[str, _Cgroup] = {}
        self.defs: dict[str, CgroupDef] = {}
        self.workers: dict[int, dict] = {}
        self.next_id = 0
        self.payloads = PayloadPlanner(0.0)

    def usable(self, path: str) -> list[int]:
        """The CPUs a cgroup at ``path`` may use (nearest ancestor with a cpuset)."""
        while path:
            cg = self.cgroups.get(path)
            if cg and cg.cpus is not None:
                return cg.cpus
            path = path.rpartition("/")[0]
        return list(range(self.layout["cpus"]))

    def find(self, name: str) -> str:
        if name in self.cgroups:
            return name
        matches = [p for p in self.cgroups if p.rpartition("/")[2] == name]
        if len(matches) != 1:
            known = ", ".join(sorted(self.cgroups)) or "none yet"
            raise ConfigError(
                f"no single cgroup named {name!r} exists at this step", f"name one of: {known}"
            )
        return matches[0]

    def spawn(self, path: str, n: int, cg: CgroupDef, work: WorkSpec | None = None) -> dict:
        work = work or cg.work
        work.check_count(n, f"cgroup {path}")
        if work.disk is not None:
            self.check_disk(path, work)
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        self.cgroups[path].workers += ids
        for i in ids:
            self.workers[i] = {"id": i, "cgroup": path, "work": work.kind}
            if work.disk is not None:
                self.workers[i]["disk"] = work.disk
                self.workers[i]["bs"] = int(work.value("bs_kb")) * 1024  # type: ignore[arg-type]
        affinity = cg.affinity.resolve(self.layout, self.usable(path)) if cg.affinity else None
        self.check_pids(path)
        policy = self.mempolicy(path, cg)
        return {
            **({"mempolicy": policy} if policy else {}),
            "op": "spawn",
            "path": path,
            "ids": ids,
            "work": work.to_wire(),
            "nice": cg.nice,
            "policy": cg.policy.to_wire(),
            "affinity": affinity,
        }

    def nodes(self, path: str) -> tuple[int, ...]:
        """The NUMA nodes a cgroup's memory may use (nearest ancestor with cpuset.mems)."""
        while path:
            cg = self.cgroups.get(path)
            if cg and cg.mems is not None:
                return cg.mems
            path = path.rpartition("/")[0]
        return tuple(range(len(self.layout["numa_nodes"])))

    def mempolicy(self, path: str, cg: CgroupDef) -> list | None:
        """The workers' memory policy, its nodes checked against the cgroup's."""
        if cg.mempolicy is None:
            return None
        allowed = self.nodes(path)
        outside = [n for n in cg.mempolicy.nodes if n not in allowed]
        if outside:
            raise ConfigError(
                f"cgroup {path}: memory policy {cg.mempolicy.mode} names node(s) "
                f"{','.join(map(str, outside))}, outside the nodes it may use "
                f"({','.join(map(str, allowed))})",
                "name nodes of its cpuset.mems (mems=...) and of the topology",
            )
        return cg.mempolicy.to_wire()

    def check_pids(self, path: str) -> None:
        """Refuse workers that a pids.max on the cgroup or an ancestor could not fork."""
        node = path
        while node:
            limit = self.cgroups[node].pids_max if node in self.cgroups else None
            inside = sum(
                len(c.workers)
                for p, c in self.cgroups.items()
                if p == node or p.startswith(node + "/")
            )
            if limit is not None and inside > limit:
                raise ConfigError(
                    f"cgroup {node}: pids.max {limit} cannot hold its {inside} workers",
                    "raise pids_max or run fewer workers",
                )
            node = node.rpartition("/")[0]

    def set_controls(self, path: str, values: dict) -> dict[str, str]:
        """Check controls against the topology and the cgroup's place; remember what the
        later ops and the checks need; the control files to write."""
        cg = self.cgroups[path]
        if "mems" in values:
            known = range(len(self.layout["numa_nodes"]))
            parent = self.nodes(path.rpartition("/")[0])
            outside = [n for n in values["mems"] if n not in known or n not in parent]
            if outside:
                raise ConfigError(
                    f"cgroup {path}: cpuset.mems names node(s) {','.join(map(str, outside))}, "
                    f"outside the nodes its parent may use ({','.join(map(str, parent))})",
                    "name nodes the topology has (and its parent's mems allow)",
                )
            cg.mems = values["mems"]
        if "cpu_max" in values:
            usable = len(self.usable(path))
            if isinstance(values["cpu_max"], float):  # a fraction of the CPUs it may use
                period = controls.DEFAULT_PERIOD_US
                quota = max(controls.MIN_QUOTA_US, round(values["cpu_max"] * usable * period))
                values = {**values, "cpu_max": (quota, period)}
            quota, period = values["cpu_max"]
            if quota > period * usable:
                raise ConfigError(
                    f"cgroup {path}: cpu.max {quota} us every {period} us is {quota / period:g} "
                    f"CPUs, more than the {usable} it may use, so it never limits",
                    f"give a quota of at most {period * usable} us, or widen its cpuset",
                )
        if "pids_max" in values:
            cg.pids_max = values["pids_max"]
            self.check_pids(path)
        return controls.files(values)

    def check_disk(self, path: str, work: WorkSpec) -> None:
        if work.disk >= len(self.disks):  # type: ignore[operator]
            raise ConfigError(
                f"cgroup {path}: {work.kind} uses disk {work.disk}, but the run declares "
                f"{len(self.disks)} disk(s)",
                "declare the disk (Scenario(disks=[Disk()]) or --disk 256MiB) or fix the index",
            )
        disk = self.disks[work.disk]  # type: ignore[index]
        if disk.fs and work.kind != "io_rand_read" and not disk.read_only:
            raise ConfigError(
                f"cgroup {path}: {work.kind} writes the raw device of disk {work.disk}, "
                f"which holds a mounted {disk.fs} filesystem it would corrupt",
                f"use io_sync(path='/mnt/disk{work.disk}') or a disk without fs",
            )

    def stop_grace_s(self) -> float:
        """How long workers get to stop: an I/O in flight on a throttled disk finishes first.

        The slowest request waits behind every other worker's on the same disk.
        """
        longest = 0.0
        for index, disk in enumerate(self.disks):
            ws = [w for w in self.workers.values() if w.get("disk") == index]
            if not ws:
                continue
            if disk.throttle.iops:
                longest = max(longest, len(ws) / disk.throttle.iops)
            if disk.throttle.bps:
                longest = max(longest, sum(w["bs"] for w in ws) / disk.throttle.bps)
        return round(min(MAX_STOP_GRACE_S, STOP_GRACE_S + 2 * longest), 3)

    def add(self, cg: CgroupDef, parent: str) -> list[dict]:
        path = f"{parent}/{cg.name}" if parent else cg.name
        if path in self.cgroups:
            raise ConfigError(f"cgroup {path} is added twice", "give each cgroup its own name")
        if parent and parent not in self.cgroups:
            raise ConfigError(f"parent cgroup {parent} does not exist", "add the parent first")
        cpus = cg.cpuset.resolve(self.layout, self.usable(parent)) if cg.cpuset else None
        self.cgroups[path] = _Cgroup(path, cpus, cg.weight)
        self.defs[path] = cg
        declared = {k: getattr(cg, k) for k in controls.FILES}
        files = self.set_controls(path, {k: v for k, v in declared.items() if v is not None})
        ops = [{"op": "add_cgroup", "path": path, "cpus": cpus, "weight": cg.weight}]
        if files:
            ops[0]["controls"] = files
        count = cg.workers
        if cg.workers_pct is not None:
            count = max(1, math.ceil(cg.workers_pct * len(self.usable(path)) - 1e-9))
            size = cg.work.group_size
            count = math.ceil(count / size) * size
        if count:
            ops.append(self.spawn(path, count, cg))
        for payload in cg.payload:
            ops.append(self.payloads.run(path, payload, None, len(self.usable(path))))
        for child in cg.children:
            ops += self.add(child, path)
        return ops

    def op(self, op: Op) -> list[dict]:
        k = op.kind
        if k == "add_cgroup":
            return self.add(op.args[0], self.find(op.target) if op.target else "")
        if k == "debug_kernel_crash":
            return [{"op": k}]
        if k == "fixture_knob":
            from ktstr.fixture_sched import CONTROL_FILE

            name, value = op.args
            return [{"op": k, "file": CONTROL_FILE, "line": f"{name}={value}"}]
        if k == "debug_freeze_fs":
            disk, ms, hung = op.args
            if disk >= len(self.disks) or not self.disks[disk].fs:
                raise ConfigError(
                    f"debug_freeze_fs needs disk {disk} with a filesystem",
                    "declare Disk(fs='ext4') at that index",
                )
            return [{"op": k, "disk": disk, "ms": ms, "hung_task_timeout_s": hung}]
        if k in PAYLOAD_OPS:
            cpus_of = lambda p: len(self.usable(p))  # noqa: E731
            return [self.payloads.op(k, op.target, op.args, self.find, cpus_of)]
        path = self.find(op.target)
        if k == "remove_cgroup":
            self.payloads.removed(path)
            for p in [p for p in self.cgroups if p == path or p.startswith(path + "/")]:
                del self.cgroups[p]
            return [{"op": k, "path": path}]
        if k == "set_cpuset":
            parent = path.rpartition("/")[0]
            cpus = op.args[0].resolve(self.layout, self.usable(parent))
            self.cgroups[path].cpus = cpus
            return [{"op": k, "path": path, "cpus": cpus}]
        if k == "clear_cpuset":
            self.cgroups[path].cpus = None
            return [{"op": "set_cpuset", "path": path, "cpus": None}]
        if k == "swap_cpusets":
            other = self.find(op.args[0])
            a, b = self.cgroups[path], self.cgroups[other]
            a.cpus, b.cpus = b.cpus, a.cpus
            return [
                {"op": "set_cpuset", "path": path, "cpus": a.cpus},
                {"op": "set_cpuset", "path": other, "cpus": b.cpus},
            ]
        if k == "set_weight":
            (weight,) = op.args
            if not 1 <= weight <= 10000:
                raise ConfigError(f"cpu.weight {weight} is outside 1..10000", "give 1..10000")
            self.cgroups[path].weight = weight
            return [{"op": k, "path": path, "weight": weight}]
        if k == "set_controls":
            values = {n: v for n, v in op.args if v is not None}
            return [{"op": k, "path": path, "controls": self.set_controls(path, values)}]
        if k == "spawn_workers":
            n, work = op.args
            return [self.spawn(path, n, self.defs[path], work)]
        if k == "stop_workers":
            (n,) = op.args
            running = self.cgroups[path].workers
            if not 0 < n <= len(running):
                raise ConfigError(
                    f"cgroup {path} has {len(running)} running worker(s) at this step, "
                    f"so {n} cannot be stopped",
                    f"stop between 1 and {len(running)}",
                )
            ids = running[-n:]
            del running[-n:]
            return [{"op": k, "path": path, "n": n, "ids": ids}]
        if k == "move_tasks":
            dst = self.find(op.args[0])
            moved = self.cgroups[path].workers
            self.cgroups[path].workers = []
            self.cgroups[dst].workers += moved
            return [{"op": k, "path": path, "dst": dst}]
        if k == "set_affinity":
            return [
                {"op": k, "path": path, "cpus": op.args[0].resolve(self.layout, self.usable(path))}
            ]
        if k in ("freeze", "unfreeze"):
            return [{"op": k, "path": path}]
        if k == "debug_stop_worker":
            index, ms = op.args
            return [{"op": k, "path": path, "index": index, "ms": ms}]
        if k == "debug_escape_cpuset":
            allowed = set(self.usable(path))
            outside = [c for c in range(self.layout["cpus"]) if c not in allowed]
            if not outside:
                raise ConfigError(
                    f"cgroup {path} may use every CPU, so nothing is outside it",
                    "give it a cpuset first",
                )
            return [{"op": k, "path": path, "index": op.args[0], "cpu": outside[0]}]
        raise ConfigError(f"unknown op {k!r}", "use an Op constructor")


def _round_offsets(hold: float, interval: float | None) -> list[float]:
    """When, within a step, its ops run: once at the start, or every interval of a loop.

    A loop is unrolled here, so each round is compiled against the state the
    rounds before it left: a swap swaps back, a spawn gets new worker ids, and
    an op that cannot repeat (adding the same cgroup twice) is refused before boot.
    """
    if not interval:
        return [0.0]
    if interval < MIN_LOOP_INTERVAL_S:
        raise ConfigError(
            f"a loop every {interval * 1000:g} ms is faster than the guest can apply ops "
            "under emulation",
            f"loop every {MIN_LOOP_INTERVAL_S * 1000:g} ms or more",
        )
    count = max(1, math.ceil(hold / interval - 1e-9))
    return [k * interval for k in range(count)]


def _note_freezes(
    ops: list[dict], looped: bool, t: float, frozen_until: dict[int, float], where: str
) -> None:
    """Record when each frozen filesystem thaws; refuse a freeze of one still frozen."""
    for o in ops:
        if o["op"] != "debug_freeze_fs":
            continue
        if looped or t < frozen_until.get(o["disk"], -1.0):
            raise ConfigError(
                f"{where} freezes disk {o['disk']} again while it is still frozen (or in a loop)",
                "let the first freeze end before the next, and keep freezes out of loops",
            )
        frozen_until[o["disk"]] = t + o["ms"] / 1000


def compile_plan(
    scenario: Scenario,
    topology: Topology,
    duration_s: float | None = None,
    disks: tuple[Disk, ...] | None = None,
) -> dict:
    """The guest's plan: the layout to verify, steps with times, ops, worker ids.

    ``disks`` replaces the scenario's own disks (the CLI's ``--disk``).
    """
    layout = topology.layout()
    duration = float(duration_s or scenario.duration_s)
    compiler = _Compiler(layout, tuple(scenario.disks if disks is None else disks))
    compiler.payloads.duration_s = duration
    steps, t, total_rounds = [], 0.0, 0
    frozen_until: dict[int, float] = {}  # disk -> when its filesystem thaws
    for index, step in enumerate(scenario.steps):
        hold = step.hold.length(duration)
        if t + hold > duration + 1e-6:
            raise ConfigError(
                f"scenario {scenario.name}: step {index} ends at {t + hold:.1f} s, "
                f"after the {duration:.1f} s duration",
                "shorten the holds or lengthen the duration",
            )
        rounds = []
        for offset in _round_offsets(hold, step.hold.loop_interval_s):
            compiler.payloads.now = t + offset
            ops = [o for op in step.ops for o in compiler.op(op)]
            where = f"scenario {scenario.name}: step {index}"
            _note_freezes(ops, bool(step.hold.loop_interval_s), t, frozen_until, where)
            rounds.append({"at_s": round(t + offset, 6), "ops": ops})
            total_rounds += 1
            if total_rounds > MAX_ROUNDS:
                raise ConfigError(
                    f"scenario {scenario.name}: its loops unroll to more than {MAX_ROUNDS} "
                    "rounds of ops",
                    "loop less often or for less time",
                )
        steps.append(
            {
                "start_s": round(t, 6),
                "hold_s": round(hold, 6),
                "loop_s": step.hold.loop_interval_s,
                "ops": rounds[0]["ops"],
                "repeats": rounds[1:],
            }
        )
        t += hold
    return {
        "mode": "scenario",
        "plan_version": wire.PLAN_VERSION,
        "scenario": scenario.name,
        "layout": layout,
        "duration_s": duration,
        "sample_interval_s": SAMPLE_INTERVAL_S,
        "stop_grace_s": compiler.stop_grace_s(),
        "exit_patience_s": EXIT_PATIENCE_S,
        "steps": steps,
        "workers": [compiler.workers[i] for i in sorted(compiler.workers)],
        **({"payloads": compiler.payloads.entries} if compiler.payloads.entries else {}),
    }
