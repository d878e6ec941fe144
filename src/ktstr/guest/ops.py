"""The ops of a plan's steps: one handler per op name, and the state they act on.

Every handler applies one op and sends one ``event`` saying what the
kernel made of it (a cgroup's effective CPUs, the workers it touched).
``OPS`` maps each op name the plan compiler emits to its handler.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from ktstr import wire
from ktstr.guest import cgroups, faults, spawn
from ktstr.guest.channel import Channel
from ktstr.guest.payloads import Payloads
from ktstr.guest.pool import Pool


class Context:
    """What applying an op needs: the channel, the workers, the disks, faults, the clock."""

    def __init__(self, channel: Channel, pool: Pool, disks: list[dict] | None = None) -> None:
        self.channel = channel
        self.pool = pool
        self.disks = {d["index"]: d for d in disks or []}  # as ktstr.guest.disks describes them
        self.faults = faults.Faults()
        self.payloads = Payloads(channel)
        pool.other_exit = self.payloads.exited  # the pool's reaper may collect a payload
        self.waiting_for: list[int] = []  # payload ids a wait_payload op holds the plan for
        self.t0 = 0.0  # scenario time 0 (monotonic); 0.0 until the plan starts
        self.deadline = 0.0
        self.gate_w = -1  # the start gate's write end while the first step spawns
        self.op_began: float | None = None  # when the op being applied began

    def event(self, op: dict, **extra: object) -> None:
        """Report an op, stamped when it began (or now, for an undo action) and when it ended.

        A cpuset write returns only once the kernel has moved every task it
        affects, one by one: until then a task may still run where the new set
        forbids, so the host needs both ends.
        """
        ended = time.monotonic()
        began = self.op_began or ended
        at = began - self.t0 if self.t0 else 0.0
        done = ended - self.t0 if self.t0 else 0.0
        self.channel.send(
            wire.EVENT,
            at_s=round(at, 6),
            done_s=round(max(done, at), 6),
            op=op["op"],
            path=op.get("path"),
            **extra,
        )

    def apply(self, op: dict, gate_fd: int = -1) -> None:
        """Apply one op; ``gate_fd`` is the start gate spawned workers wait on (or -1)."""
        # Events carry when the op began: the kernel may act on a write (migrate a
        # task off a CPU a new cpuset lacks) before the write returns, and the host
        # must never see the effect stamped before its cause.
        self.op_began = time.monotonic()
        try:
            handler = OPS.get(op["op"])
            if handler is None:
                raise ValueError(f"unknown op {op['op']!r}")
            handler(self, op, gate_fd)
        finally:
            self.op_began = None

    def worker(self, op: dict) -> int:
        """The worker an op names by its cgroup and its index among the live members."""
        return self.pool.members(op["path"])[op["index"]]


def add_cgroup(ctx: Context, op: dict, gate_fd: int) -> None:
    controls = cgroups.create(op["path"], op["cpus"], op["weight"], op.get("controls"))
    ctx.event(
        op, cpus=cgroups.effective(op["path"]), **({"controls": controls} if controls else {})
    )


def set_controls(ctx: Context, op: dict, gate_fd: int) -> None:
    ctx.event(op, controls=cgroups.set_controls(op["path"], op["controls"]))


def spawn_workers(ctx: Context, op: dict, gate_fd: int) -> None:
    pids = spawn.fork_workers(op, ctx.disks, gate_fd, ctx.gate_w, ctx.t0, ctx.deadline)
    ctx.pool.add(pids, op["path"])
    ctx.event(op, ids=op["ids"], affinity=op["affinity"])


def remove_cgroup(ctx: Context, op: dict, gate_fd: int) -> None:
    ctx.payloads.kill(ctx.payloads.in_cgroup(op["path"]), "remove_cgroup", signal.SIGKILL)
    ids = ctx.pool.subtree(op["path"])
    ctx.pool.signal(ids, signal.SIGTERM)
    ctx.pool.wait_for(ids, 5.0)
    cgroups.remove(op["path"])
    ctx.event(op)


def set_cpuset(ctx: Context, op: dict, gate_fd: int) -> None:
    cgroups.set_cpus(op["path"], op["cpus"])
    ctx.event(op, cpus=cgroups.effective(op["path"]))


def set_weight(ctx: Context, op: dict, gate_fd: int) -> None:
    cgroups.set_weight(op["path"], op["weight"])
    ctx.event(op, weight=op["weight"])


def stop_workers(ctx: Context, op: dict, gate_fd: int) -> None:
    ids = op["ids"]
    ctx.pool.signal(ids, signal.SIGTERM)
    ctx.event(op, ids=ids)


def move_tasks(ctx: Context, op: dict, gate_fd: int) -> None:
    cgroups.move_tasks(op["path"], op["dst"])
    ctx.pool.moved(op["path"], op["dst"])
    ctx.event(op, dst=op["dst"], cpus=cgroups.effective(op["dst"]))


def set_affinity(ctx: Context, op: dict, gate_fd: int) -> None:
    ids = ctx.pool.members(op["path"])
    for wid in ids:
        try:
            os.sched_setaffinity(ctx.pool.pids[wid], op["cpus"])
        except ProcessLookupError:
            pass
    ctx.event(op, cpus=op["cpus"], ids=ids)


def freeze(ctx: Context, op: dict, gate_fd: int) -> None:
    cgroups.set_frozen(op["path"], op["op"] == "freeze")
    ctx.event(op)


def debug_stop_worker(ctx: Context, op: dict, gate_fd: int) -> None:
    wid = ctx.worker(op)
    ctx.faults.stop_process(ctx.pool.pids[wid], op["ms"])
    ctx.event(op, worker=wid, ms=op["ms"])


def debug_freeze_fs(ctx: Context, op: dict, gate_fd: int) -> None:
    disk = op["disk"]
    ctx.faults.freeze_fs(
        ctx.disks[disk]["mount"],
        op["ms"],
        op["hung_task_timeout_s"],
        lambda: ctx.event({"op": "debug_thaw_fs"}, disk=disk),
    )
    ctx.event(op, disk=disk, ms=op["ms"])


def debug_kernel_crash(ctx: Context, op: dict, gate_fd: int) -> None:
    ctx.event(op)  # first: the write does not return
    faults.crash_kernel()


def debug_escape_cpuset(ctx: Context, op: dict, gate_fd: int) -> None:
    wid = ctx.worker(op)
    faults.escape_cpuset(ctx.pool.pids[wid], op["cpu"])
    ctx.event(op, worker=wid, cpu=op["cpu"])


def fixture_knob(ctx: Context, op: dict, gate_fd: int) -> None:
    """One ``name=value`` line for the fixture scheduler, which polls its control file."""
    with open(op["file"], "a") as f:
        f.write(op["line"] + "\n")
    ctx.event(op, line=op["line"])


def run_payload(ctx: Context, op: dict, gate_fd: int) -> None:
    pid = ctx.payloads.start(op)
    ctx.event(op, payload=op["id"], pid=pid)


def wait_payload(ctx: Context, op: dict, gate_fd: int) -> None:
    """Hold every later op until these payloads end (the run loop keeps sampling)."""
    ctx.waiting_for = list(op["ids"])
    ctx.event(op, ids=op["ids"])


def kill_payload(ctx: Context, op: dict, gate_fd: int) -> None:
    ctx.payloads.kill(op["ids"], "kill_payload")
    ctx.event(op, ids=op["ids"])


OPS: dict[str, Callable[[Context, dict, int], None]] = {
    "fixture_knob": fixture_knob,
    "add_cgroup": add_cgroup,
    "spawn": spawn_workers,
    "remove_cgroup": remove_cgroup,
    "set_cpuset": set_cpuset,
    "set_weight": set_weight,
    "set_controls": set_controls,
    "stop_workers": stop_workers,
    "move_tasks": move_tasks,
    "set_affinity": set_affinity,
    "freeze": freeze,
    "unfreeze": freeze,
    "debug_stop_worker": debug_stop_worker,
    "debug_freeze_fs": debug_freeze_fs,
    "debug_kernel_crash": debug_kernel_crash,
    "debug_escape_cpuset": debug_escape_cpuset,
    "run_payload": run_payload,
    "wait_payload": wait_payload,
    "kill_payload": kill_payload,
}
