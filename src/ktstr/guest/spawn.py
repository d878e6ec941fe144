"""Spawning workers: the resources each member of a pair or group shares, and the fork.

A ``spawn`` op names a cgroup, worker ids and a work kind.  Kinds that
work in pairs or groups get their wiring here (pipes, a shared page, a
lock file, a disk's slots); each worker is then forked into its cgroup
with its nice, policy and affinity, and waits at the start gate.
"""

from __future__ import annotations

import mmap
import os
import select
import time

from ktstr.guest import cgroups, ioworkers, mempolicy, workers

RESULTS = "/tmp/ktstr-results"  # each worker writes <id>.json here
SCHED_EXT, SCHED_DEADLINE = 7, 6  # include/uapi/linux/sched.h
SYS_SCHED_SETATTR = 314  # x86_64
POLICIES = {
    "batch": os.SCHED_BATCH,
    "idle": os.SCHED_IDLE,
    "fifo": os.SCHED_FIFO,
    "rr": os.SCHED_RR,
    "ext": SCHED_EXT,
}  # every other policy but "normal"; workers start normal (SCHED_RESET_ON_FORK)
READY_TIMEOUT_S = 60.0  # for forked workers to join their cgroups (memory migrates)
# Workers per group for the kinds that work together; every other kind works alone.
PAIRS = ("pipe_pingpong", "futex_pingpong")


def group_size(kind: str, params: dict) -> int:
    """How many consecutive worker ids form one group of ``kind``."""
    if kind in PAIRS:
        return 2
    if kind == "fan_out":
        return params.get("n", 0) + 1  # one producer, n consumers
    if kind == "mutex_contention":
        return params.get("n", 0)
    return 1


def groups(op: dict, disks: dict[int, dict]) -> tuple[list[dict], list[int]]:
    """Per-worker shared resources for pair and group kinds, and every fd made.

    Each member keeps only the pipe ends it uses (``keep``), so when one
    member exits its partner reads EOF instead of blocking forever.
    ``disks`` maps a disk's index to its description (ktstr.guest.disks).
    """
    kind, params, ids = op["work"]["kind"], op["work"]["params"], op["ids"]
    size = group_size(kind, params)
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
                member["keep"] = _kept_ends(kind, shared["pipes"], rank)
            out.append(member)
    if kind in ioworkers.KINDS:  # disk I/O: each worker gets its share of the device
        disk = disks[params["disk"]]
        for slot, member in enumerate(out):
            member.update(device=disk["device"], sectors=disk["sectors"], slot=slot, slots=len(out))
    return out, fds


def _kept_ends(kind: str, pipes: list[tuple[int, int]], rank: int) -> set[int]:
    """The pipe ends one member uses: a ping-pong partner reads its own pipe and
    writes the other's; a fan-out producer writes every consumer's pipe, and each
    consumer reads its own."""
    if kind == "pipe_pingpong":
        return {pipes[rank][0], pipes[1 - rank][1]}
    if rank == 0:
        return {wr for _, wr in pipes[1:]}
    return {pipes[rank][0]}


def fork_workers(
    op: dict, disks: dict[int, dict], gate_fd: int, gate_w: int, t0: float, deadline: float
) -> dict[int, int]:
    """Fork the op's workers into their cgroup; returns worker id -> pid.

    ``gate_fd`` is the start gate's read end the workers wait on (or -1),
    ``gate_w`` its write end, which no worker may hold.  The agent closes
    every pipe end it made here once all are forked.
    """
    members, fds = groups(op, disks)
    ready_r, ready_w = os.pipe()  # each worker closes its copy once in its cgroup
    pids = {}
    for wid, group in zip(op["ids"], members, strict=True):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                inherited = fds + [gate_w, ready_r]
                _become_worker(op, wid, group, inherited, gate_fd, t0, deadline, ready_w)
            except BaseException as err:  # a worker must never return into the agent
                print(f"ktstr-worker {wid}: {err!r}", flush=True)
                code = 1
            os._exit(code)
        pids[wid] = pid
    for fd in fds:
        os.close(fd)
    os.close(ready_w)
    _wait_in_cgroups(ready_r)
    return pids


def _wait_in_cgroups(ready_r: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every worker forked has joined its cgroup (the pipe's EOF), at most
    ``timeout_s``: joining a cgroup whose cpuset.mems lacks a node the worker's memory
    is on migrates that memory first (cgroup v2 always does), seconds under emulation,
    and that is no scheduler's wait once the workers are released."""
    end = time.monotonic() + timeout_s
    try:
        while (left := end - time.monotonic()) > 0:
            if select.select([ready_r], [], [], left)[0] and not os.read(ready_r, 64):
                return
    finally:
        os.close(ready_r)


def _become_worker(
    op: dict,
    wid: int,
    group: dict,
    inherited: list[int],
    gate_fd: int,
    t0: float,
    deadline: float,
    ready_w: int = -1,
) -> None:
    """In the child: drop the fds it does not use, join the cgroup (then tell the agent
    through ``ready_w``), set nice, policy and affinity, then run the work until the
    deadline."""
    for fd in inherited:
        if fd >= 0 and fd not in group.get("keep", ()):
            os.close(fd)
    cgroups.enter(op["path"], 0)
    if ready_w >= 0:
        os.close(ready_w)
    if op["nice"]:
        os.setpriority(os.PRIO_PROCESS, 0, op["nice"])
    name, prio, *reservation = op["policy"]
    if name == "deadline":
        set_deadline(*reservation)
    elif name != "normal":
        os.sched_setscheduler(0, POLICIES[name], os.sched_param(prio))
    if op["affinity"]:
        os.sched_setaffinity(0, op["affinity"])
    policy = op.get("mempolicy")
    if policy:
        mempolicy.apply(*policy)

    def at_end() -> dict:
        """Quota and memory facts, read by the worker itself as it ends."""
        facts: dict = {"mems_allowed": mempolicy.mems_allowed()}
        throttled = cgroups.throttling()
        if throttled:
            facts["throttled"] = throttled
        return {**facts, **(mempolicy.report() if policy else {})}

    workers.run(wid, op["work"], group, gate_fd, t0, deadline, result_path(wid), at_end)


def set_deadline(runtime_ns: int, deadline_ns: int, period_ns: int) -> None:
    """SCHED_DEADLINE for this task: Python has no sched_setattr, so the raw syscall."""
    import ctypes  # lazy: only deadline workers pay for it (LAZY_IMPORTS packs it)

    class Attr(ctypes.Structure):  # struct sched_attr, include/uapi/linux/sched/types.h
        _fields_ = [
            ("size", ctypes.c_uint32),
            ("policy", ctypes.c_uint32),
            ("flags", ctypes.c_uint64),
            ("nice", ctypes.c_int32),
            ("priority", ctypes.c_uint32),
            ("runtime", ctypes.c_uint64),
            ("deadline", ctypes.c_uint64),
            ("period", ctypes.c_uint64),
        ]

    attr = Attr(ctypes.sizeof(Attr), SCHED_DEADLINE, 0, 0, 0, runtime_ns, deadline_ns, period_ns)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_SCHED_SETATTR, 0, ctypes.byref(attr), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sched_setattr(SCHED_DEADLINE): {os.strerror(err)}")


def result_path(wid: int) -> str:
    return f"{RESULTS}/{wid}.json"
