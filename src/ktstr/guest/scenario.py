"""Execute a compiled scenario plan: cgroups, workers, steps, samples, results.

The agent is single-threaded: one loop waits for the next due event
(a step, a loop repetition, a sample tick, a resumed worker, the end),
while the workers run as separate processes.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import select
import signal
import time
from collections.abc import Callable

from ktstr import wire
from ktstr.guest import disks, ioworkers, topo, workers
from ktstr.guest.channel import Channel
from ktstr.guest.sched import SchedulerProcess

CG_ROOT = "/sys/fs/cgroup"
CG_BASE = f"{CG_ROOT}/ktstr"
RESULTS = "/tmp/ktstr-results"
START_DELAY_S = 0.3  # time for forked workers to reach the gate
STOP_GRACE_S = 3.0  # after the deadline, before SIGKILL
CALIBRATION_LOOPS = 200_000
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878  # _IOWR('X', 119/120, int)
HUNG_TASK_TIMEOUT = "/proc/sys/kernel/hung_task_timeout_secs"


def calibrate() -> float:
    """Seconds for a fixed CPU loop; the host runs the same loop to get a dilation."""
    started = time.perf_counter()
    for _ in range(CALIBRATION_LOOPS):
        pass
    return time.perf_counter() - started


def _write(path: str, value: str) -> None:
    """Write a control file as ``echo`` would: an empty value still reaches the kernel."""
    with open(path, "w") as f:
        f.write(value + "\n")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _cpulist(cpus: list[int] | None) -> str:
    return ",".join(map(str, cpus)) if cpus else ""


def _proc_stat() -> dict[int, list[int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                out[int(parts[0][3:])] = [int(x) for x in parts[1:9]]
    return out


def _schedstat_cpus() -> dict[int, list[int]]:
    out = {}
    with open("/proc/schedstat") as f:
        for line in f:
            if line.startswith("cpu"):
                parts = line.split()
                out[int(parts[0][3:])] = [int(parts[7]), int(parts[8]), int(parts[9])]
    return out


class Runner:
    def __init__(self, channel: Channel, plan: dict, disks: list[dict] | None = None) -> None:
        if plan.get("plan_version") != wire.PLAN_VERSION:
            raise ValueError(
                f"plan version {plan.get('plan_version')!r}, this agent runs {wire.PLAN_VERSION}"
            )
        self.channel, self.plan = channel, plan
        self.disks = {d["index"]: d for d in disks or []}  # as ktstr.guest.disks describes them
        self.pids: dict[int, int] = {}  # worker id -> pid
        self.path_of: dict[int, str] = {}
        self.exited: set[int] = set()
        self.killed: set[int] = set()
        self.undo: list[tuple[float, Callable[[], None]]] = []  # (when, action): end a debug fault
        self.frozen = 0  # filesystems frozen now
        self.kernel_hung_timeout: str | None = None  # to restore after the last thaw
        self.t0 = 0.0
        self.deadline = 0.0
        self.gate_w = -1
        self.op_began: float | None = None  # when the op being applied began
        spec = plan.get("scheduler")
        self.sched = SchedulerProcess(channel, spec) if spec else None

    # --- cgroups -------------------------------------------------------
    def cg(self, path: str) -> str:
        return f"{CG_BASE}/{path}"

    def event(self, op: dict, **extra: object) -> None:
        began = self.op_began or time.monotonic()
        now = began - self.t0 if self.t0 else 0.0
        self.channel.send(wire.EVENT, at_s=round(now, 6), op=op["op"], path=op.get("path"), **extra)

    def enable_children(self, directory: str) -> None:
        available = _read(f"{directory}/cgroup.controllers").split()
        wanted = [c for c in ("cpu", "cpuset") if c in available]
        if wanted:
            _write(f"{directory}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def add_cgroup(self, op: dict) -> None:
        path = self.cg(op["path"])
        self.enable_children(os.path.dirname(path))
        os.mkdir(path)
        if op["cpus"]:
            _write(f"{path}/cpuset.cpus", _cpulist(op["cpus"]))
        if op["weight"]:
            _write(f"{path}/cpu.weight", str(op["weight"]))
        self.event(op, cpus=self.effective(op["path"]))

    def effective(self, path: str) -> list[int]:
        return topo.parse_cpulist(_read(f"{self.cg(path)}/cpuset.cpus.effective"))

    def members(self, path: str) -> list[int]:
        return [w for w, p in self.path_of.items() if p == path and w not in self.exited]

    def subtree(self, path: str) -> list[int]:
        return [
            w
            for w, p in self.path_of.items()
            if (p == path or p.startswith(path + "/")) and w not in self.exited
        ]

    # --- workers -------------------------------------------------------
    def groups(self, op: dict) -> tuple[list[dict], list[int]]:
        """Per-worker shared resources for pair and group kinds, and every fd made.

        Each member keeps only the pipe ends it uses (``keep``), so when one
        member exits its partner reads EOF instead of blocking forever.
        """
        kind, params, ids = op["work"]["kind"], op["work"]["params"], op["ids"]
        size = {
            "pipe_pingpong": 2,
            "futex_pingpong": 2,
            "fan_out": params.get("n", 0) + 1,
            "mutex_contention": params.get("n", 0),
        }.get(kind, 1)
        out, fds = [], []
        for start in range(0, len(ids), size):
            shared: dict = {}
            if kind in ("pipe_pingpong", "fan_out"):
                pipes = [os.pipe() for _ in range(size)]
                fds += [fd for pair in pipes for fd in pair]
                shared["pipes"] = pipes
            elif kind == "futex_pingpong":
                shared["shm"] = mmap.mmap(-1, mmap.PAGESIZE)
            elif kind == "mutex_contention":
                shared["lock_path"] = f"/tmp/ktstr-lock-{ids[start]}"
            for rank in range(size):
                member = dict(shared, rank=rank)
                if "pipes" in shared:
                    pipes = shared["pipes"]
                    if kind == "pipe_pingpong":
                        member["keep"] = {pipes[rank][0], pipes[1 - rank][1]}
                    elif rank == 0:
                        member["keep"] = {wr for _, wr in pipes[1:]}
                    else:
                        member["keep"] = {pipes[rank][0]}
                out.append(member)
        if kind in ioworkers.KINDS:  # disk I/O: each worker gets its share of the device
            disk = self.disks[params["disk"]]
            for slot, member in enumerate(out):
                member.update(
                    device=disk["device"], sectors=disk["sectors"], slot=slot, slots=len(out)
                )
        return out, fds

    def spawn(self, op: dict, gate_fd: int) -> None:
        procs = self.cg(op["path"]) + "/cgroup.procs"
        members, fds = self.groups(op)
        for wid, group in zip(op["ids"], members, strict=True):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    for fd in fds + [self.gate_w]:
                        if fd >= 0 and fd not in group.get("keep", ()):
                            os.close(fd)
                    _write(procs, "0")
                    if op["nice"]:
                        os.setpriority(os.PRIO_PROCESS, 0, op["nice"])
                    name, prio = op["policy"]
                    if name != "normal":
                        policy = {
                            "batch": os.SCHED_BATCH,
                            "idle": os.SCHED_IDLE,
                            "fifo": os.SCHED_FIFO,
                            "rr": os.SCHED_RR,
                        }[name]
                        os.sched_setscheduler(0, policy, os.sched_param(prio))
                    if op["affinity"]:
                        os.sched_setaffinity(0, op["affinity"])
                    workers.run(
                        wid,
                        op["work"],
                        group,
                        gate_fd,
                        self.t0,
                        self.deadline,
                        f"{RESULTS}/{wid}.json",
                    )
                except BaseException as err:  # a worker must never return into the agent
                    print(f"ktstr-worker {wid}: {err!r}", flush=True)
                    code = 1
                os._exit(code)
            self.pids[wid] = pid
            self.path_of[wid] = op["path"]
        for fd in fds:
            os.close(fd)
        self.event(op, ids=op["ids"], affinity=op["affinity"])

    def signal_workers(self, ids: list[int], sig: int) -> None:
        for wid in ids:
            try:
                os.kill(self.pids[wid], sig)
            except ProcessLookupError:
                pass

    # --- ops -----------------------------------------------------------
    def apply(self, op: dict, gate_fd: int = -1) -> None:
        # Events carry when the op began: the kernel may act on a write (migrate a
        # task off a CPU a new cpuset lacks) before the write returns, and the host
        # must never see the effect stamped before its cause.
        self.op_began = time.monotonic()
        try:
            self._apply(op, gate_fd)
        finally:
            self.op_began = None

    def _apply(self, op: dict, gate_fd: int) -> None:
        kind = op["op"]
        if kind == "add_cgroup":
            self.add_cgroup(op)
        elif kind == "spawn":
            self.spawn(op, gate_fd)
        elif kind == "remove_cgroup":
            ids = self.subtree(op["path"])
            self.signal_workers(ids, signal.SIGTERM)
            self.wait_for(ids, 5.0)
            tree = [root for root, _, _ in os.walk(self.cg(op["path"]))]
            for directory in sorted(tree, key=len, reverse=True):
                os.rmdir(directory)
            self.event(op)
        elif kind == "set_cpuset":
            _write(f"{self.cg(op['path'])}/cpuset.cpus", _cpulist(op["cpus"]))
            self.event(op, cpus=self.effective(op["path"]))
        elif kind == "set_weight":
            _write(f"{self.cg(op['path'])}/cpu.weight", str(op["weight"]))
            self.event(op, weight=op["weight"])
        elif kind == "stop_workers":
            ids = op["ids"]
            self.signal_workers(ids, signal.SIGTERM)
            self.event(op, ids=ids)
        elif kind == "move_tasks":
            dst = self.cg(op["dst"]) + "/cgroup.procs"
            for pid in _read(f"{self.cg(op['path'])}/cgroup.procs").split():
                _write(dst, pid)
            for wid in self.members(op["path"]):
                self.path_of[wid] = op["dst"]
            self.event(op, dst=op["dst"], cpus=self.effective(op["dst"]))
        elif kind == "set_affinity":
            ids = self.members(op["path"])
            for wid in ids:
                try:
                    os.sched_setaffinity(self.pids[wid], op["cpus"])
                except ProcessLookupError:
                    pass
            self.event(op, cpus=op["cpus"], ids=ids)
        elif kind in ("freeze", "unfreeze"):
            _write(f"{self.cg(op['path'])}/cgroup.freeze", "1" if kind == "freeze" else "0")
            self.event(op)
        elif kind == "debug_stop_worker":
            wid = self.members(op["path"])[op["index"]]
            os.kill(self.pids[wid], signal.SIGSTOP)
            pid = self.pids[wid]
            self.later(op["ms"], lambda: os.kill(pid, signal.SIGCONT))
            self.event(op, worker=wid, ms=op["ms"])
        elif kind == "debug_freeze_fs":
            self.freeze_fs(op)
        elif kind == "debug_kernel_crash":
            self.event(op)
            _write("/proc/sysrq-trigger", "c")
        elif kind == "debug_escape_cpuset":
            wid = self.members(op["path"])[op["index"]]
            _write(f"{CG_ROOT}/cgroup.procs", str(self.pids[wid]))
            os.sched_setaffinity(self.pids[wid], {op["cpu"]})
            self.event(op, worker=wid, cpu=op["cpu"])
        else:
            raise ValueError(f"unknown op {kind!r}")

    def freeze_fs(self, op: dict) -> None:
        """FIFREEZE a disk's filesystem until ``ms`` have passed (or the run ends).

        The hung-task timeout, when the op sets it, holds while any filesystem
        is frozen and goes back to the kernel's own value after the last thaw.
        """
        hung = op["hung_task_timeout_s"]
        if hung and not os.path.exists(HUNG_TASK_TIMEOUT):
            raise RuntimeError(
                "debug_freeze_fs: this kernel has no hung-task detector "
                "(CONFIG_DETECT_HUNG_TASK); drop hung_task_timeout_s or use a kernel with it"
            )
        fd = os.open(self.disks[op["disk"]]["mount"], os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FIFREEZE, 0)
        except OSError:
            os.close(fd)
            raise
        self.frozen += 1
        if hung:
            if self.kernel_hung_timeout is None:
                self.kernel_hung_timeout = _read(HUNG_TASK_TIMEOUT)
            _write(HUNG_TASK_TIMEOUT, str(hung))

        def thaw() -> None:
            fcntl.ioctl(fd, FITHAW, 0)
            os.close(fd)
            self.frozen -= 1
            if not self.frozen and self.kernel_hung_timeout is not None:
                _write(HUNG_TASK_TIMEOUT, self.kernel_hung_timeout)
                self.kernel_hung_timeout = None
            self.event({"op": "debug_thaw_fs"}, disk=op["disk"])

        self.later(op["ms"], thaw)
        self.event(op, disk=op["disk"], ms=op["ms"])

    def later(self, ms: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``ms`` (or at the end, whichever comes first)."""
        self.undo.append((time.monotonic() + ms / 1000, action))

    # --- lifetime ------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.sched and pid == self.sched.pid:
                self.sched.on_exit(status)
                continue
            for wid, p in self.pids.items():
                if p == pid:
                    self.exited.add(wid)

    def wait_for(self, ids: list[int], timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not set(ids) <= self.exited:
            self.reap()
            time.sleep(0.02)

    def sample(self, previous: dict) -> dict:
        stat, sched = _proc_stat(), _schedstat_cpus()
        util = {}
        for cpu, now in stat.items():
            before = previous.get("stat", {}).get(cpu)
            if before:
                delta = [a - b for a, b in zip(now, before, strict=True)]
                total = sum(delta) or 1
                idle = delta[3] + delta[4]
                util[str(cpu)] = round(1 - idle / total, 4)
        self.channel.send(
            wire.SAMPLE,
            at_s=round(time.monotonic() - self.t0, 6),
            util=util,
            steal={str(c): v[7] for c, v in stat.items()},
            schedstat={str(c): v for c, v in sched.items()},
            running=len([w for w in self.pids if w not in self.exited]),
            disks={d["name"]: disks.sample(d["name"]) for d in self.disks.values()},
        )
        return {"stat": stat}

    def run(self) -> None:
        try:
            self.run_plan()
        except BaseException:
            self.undo_all()  # never leave a filesystem frozen or a worker stopped
            raise

    def undo_all(self) -> None:
        pending, self.undo = self.undo, []
        for _, action in pending:
            try:
                action()
            except OSError as err:
                print(f"ktstr-agent: undoing a debug fault failed: {err}", flush=True)

    def run_plan(self) -> None:
        plan = self.plan
        observed = topo.observed_topology()
        for key in ("cpus", "numa_nodes", "llcs", "smt_siblings"):
            if observed[key] != plan["layout"][key]:
                raise ValueError(
                    f"the guest's {key} {observed[key]} differ from the plan's "
                    f"{plan['layout'][key]}"
                )
        self.channel.send(wire.CALIBRATION, loop_s=calibrate(), loops=CALIBRATION_LOOPS)
        if self.sched and not self.sched.start(time.monotonic()):
            self.channel.send(wire.SCENARIO_END, at_s=0.0, skipped="the scheduler did not attach")
            return
        os.makedirs(RESULTS, exist_ok=True)
        os.makedirs(CG_BASE, exist_ok=True)
        self.enable_children(CG_ROOT)
        gate_r, self.gate_w = os.pipe()
        self.t0 = time.monotonic() + START_DELAY_S
        self.deadline = self.t0 + plan["duration_s"]
        steps = plan["steps"]
        for op in steps[0]["ops"] if steps and steps[0]["start_s"] == 0 else []:
            self.apply(op, gate_r)
        os.close(gate_r)
        while time.monotonic() < self.t0:
            time.sleep(0.005)
        os.close(self.gate_w)  # every worker of the first step starts now
        self.gate_w = -1
        self.channel.send(wire.EVENT, at_s=0.0, op="start", path=None)
        # The plan lists every round of ops in time order (loops come unrolled), so one
        # index walks them; samples keep their own clock.
        rounds: list[tuple[float, list]] = []
        for i, step in enumerate(steps):
            if i or step["start_s"] != 0:
                rounds.append((self.t0 + step["start_s"], step["ops"]))
            rounds += [(self.t0 + r["at_s"], r["ops"]) for r in step["repeats"]]
        rounds.append((float("inf"), []))
        next_round = 0
        interval = plan["sample_interval_s"]
        next_sample = self.t0 + interval
        last_sample = self.sample({})
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                break
            for entry in list(self.undo):
                if now >= entry[0]:
                    self.undo.remove(entry)
                    entry[1]()
            when = min(rounds[next_round][0], next_sample)
            if now < when:
                wake = min([when, self.deadline] + [w for w, _ in self.undo])
                self.wait(max(0.0, wake - now))
                self.reap()
                continue
            if rounds[next_round][0] <= now:
                for op in rounds[next_round][1]:
                    self.apply(op)
                next_round += 1
            else:
                last_sample = self.sample(last_sample)
                next_sample += interval
        self.finish()

    def wait(self, seconds: float) -> None:
        """Sleep, but wake for the scheduler's output and kernel messages as they come."""
        if not self.sched:
            time.sleep(seconds)
            return
        fds = self.sched.fds()
        timeout = min(seconds, 0.1)  # sysfs state changes cannot be waited on: poll them
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)
        self.sched.poll()

    def finish(self) -> None:
        self.undo_all()
        for path in set(self.path_of.values()):
            try:
                _write(f"{self.cg(path)}/cgroup.freeze", "0")
            except OSError:
                pass  # removed, or never frozen
        live = [w for w in self.pids if w not in self.exited]
        self.wait_for(live, self.plan.get("stop_grace_s", STOP_GRACE_S))
        stragglers = [w for w in self.pids if w not in self.exited]
        self.signal_workers(stragglers, signal.SIGKILL)
        self.wait_for(stragglers, 2.0)
        for wid in sorted(self.pids):
            path = f"{RESULTS}/{wid}.json"
            try:
                with open(path) as f:
                    data = wire.loads(f.read())
            except (OSError, ValueError):
                data = {"id": wid, "error": "no result (killed or crashed)"}
            data["cgroup_path"] = self.path_of[wid]
            data["killed"] = wid in stragglers
            self.channel.send(wire.WORKER, **data)
        if self.sched:
            self.sched.stop()
        self.channel.send(wire.SCENARIO_END, at_s=round(time.monotonic() - self.t0, 6))
