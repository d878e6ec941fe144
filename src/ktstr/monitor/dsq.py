"""What waits where under sched_ext: each dispatch queue's tasks, and each CPU's runnable
tasks with how long they have waited.

A stall shows here first: the kernel's watchdog ejects a scheduler once a
task on a CPU's ``runnable_list`` has waited longer than the scheduler's
``watchdog_timeout``; the host can see that wait grow before it happens.
A task a BPF scheduler holds in its own structures (a BPF queue, or
nothing at all) is runnable but on no DSQ: its ``dsq`` is None.
Every walk is bounded: list pointers come from an untrusted guest.
"""

from __future__ import annotations

from typing import Any

import drgn
from drgn import container_of
from drgn.helpers.linux.sched import cpu_rq

from ktstr.monitor import rq as rq_mod
from ktstr.monitor import scx

MAX_TASKS = 256  # tasks listed per queue or per CPU
MAX_STEPS = 4096  # list nodes followed per walk, cursors included
ITER_CURSOR = 1  # SCX_DSQ_LNODE_ITER_CURSOR: a BPF iterator's place-holder, not a task


def _list_nodes(head: drgn.Object, limit: int = MAX_STEPS) -> list[int]:
    """Addresses of a ``struct list_head``'s nodes, at most ``limit``; stops on a loop."""
    prog = head.prog_
    start = head.address_
    node = head.next.value_()
    seen: set[int] = set()
    out = []
    list_head = prog.type("struct list_head *")
    while node and node != start and node not in seen and len(out) < limit:
        seen.add(node)
        out.append(node)
        node = drgn.Object(prog, list_head, node).next.value_()
    return out


def hz(prog: drgn.Program, config_path: str | None = None) -> int | None:
    """The guest kernel's tick rate: from ``tick_nsec`` when the kernel has it, else from
    its config file; None when neither says."""
    try:
        tick = int(prog["tick_nsec"].value_())
        if tick > 0:
            return round(1_000_000_000 / tick)
    except (KeyError, drgn.FaultError):
        pass
    if config_path:
        try:
            with open(config_path) as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError):
            return None
    return None


def jiffies(prog: drgn.Program) -> int:
    return int(prog["jiffies"].value_())


def task(p: drgn.Object, now_jiffies: int | None = None, tick_hz: int | None = None) -> dict:
    """A task as plain values: pid, comm, class, and sched_ext's view of it."""
    prog = p.prog_
    out: dict[str, Any] = {
        "pid": int(p.pid.value_()),
        "comm": p.comm.string_().decode(errors="replace"),
        "class": rq_mod.class_name(prog, p.sched_class),
        "cpu": int(p.thread_info.cpu.value_())
        if scx.has_member(p.type_.type, "thread_info")
        else None,
        "kthread": bool(int(p.flags.value_()) & 0x00200000),  # PF_KTHREAD
    }
    ext = p.scx
    dsq = ext.dsq.value_()
    out["dsq"] = int(ext.dsq.id.value_()) if dsq else None
    out["slice_ns"] = int(ext.slice.value_())
    out["dsq_vtime"] = int(ext.dsq_vtime.value_())
    if now_jiffies is not None:
        waited = now_jiffies - int(ext.runnable_at.value_())
        out["runnable_for_jiffies"] = waited
        if tick_hz:
            out["runnable_for_ms"] = round(waited * 1000 / tick_hz, 1)
    return out


def runnable(prog: drgn.Program, cpu: int, tick_hz: int | None = None) -> list[dict]:
    """The CPU's sched_ext runnable tasks, longest waiting first (the kernel appends to
    ``rq->scx.runnable_list``, so its head has waited longest)."""
    now = jiffies(prog)
    head = cpu_rq(prog, cpu).scx.runnable_list
    out = []
    for node in _list_nodes(head, MAX_TASKS):
        lh = drgn.Object(prog, "struct list_head *", node)
        p = container_of(lh, "struct task_struct", "scx.runnable_node")
        out.append(task(p, now, tick_hz))
    return out


def oldest_wait(prog: drgn.Program, cpus: list[int]) -> tuple[int, int, str, int] | None:
    """(jiffies waited, cpu, comm, pid) of the longest-waiting runnable task over ``cpus``:
    one read per CPU (each list's head), cheap enough for every sample."""
    now = jiffies(prog)
    best = None
    for cpu in cpus:
        head = cpu_rq(prog, cpu).scx.runnable_list
        first = head.next.value_()
        if not first or first == head.address_:
            continue
        lh = drgn.Object(prog, "struct list_head *", first)
        p = container_of(lh, "struct task_struct", "scx.runnable_node")
        waited = now - int(p.scx.runnable_at.value_())
        if best is None or waited > best[0]:
            best = (waited, cpu, p.comm.string_().decode(errors="replace"), int(p.pid.value_()))
    return best


def queued(dsq: drgn.Object, tick_hz: int | None = None) -> dict:
    """A ``struct scx_dispatch_q``: its id, depth, and the tasks on it in dispatch order."""
    prog = dsq.prog_
    now = jiffies(prog)
    tasks = []
    node_type = prog.type("struct scx_dsq_list_node *")
    for node in _list_nodes(dsq.list):
        entry = drgn.Object(prog, node_type, node)
        if int(entry.flags.value_()) & ITER_CURSOR:
            continue
        p = container_of(entry, "struct task_struct", "scx.dsq_list")
        tasks.append(task(p, now, tick_hz))
        if len(tasks) >= MAX_TASKS:
            break
    return {"id": int(dsq.id.value_()), "nr": int(dsq.nr.value_()), "tasks": tasks}


def all_dsqs(prog: drgn.Program, cpus: list[int], tick_hz: int | None = None) -> list[dict]:
    """Every DSQ with its tasks: each CPU's local DSQ, the global DSQ(s), the scheduler's
    own.  Local DSQs carry ``cpu``; global ones ``node``."""
    out = []
    for cpu in cpus:
        entry = queued(cpu_rq(prog, cpu).scx.local_dsq, tick_hz)
        out.append({"kind": "local", "cpu": cpu, **entry})
    sch = scx.root(prog)
    if sch is None:
        return out
    if scx.has_member(sch.type_.type, "pnode"):
        nr_nodes = scx.variable(prog, "nr_node_ids")
        nodes = int(nr_nodes.value_()) if nr_nodes is not None else 1
        for node in range(min(nodes, 64)):
            pnode = sch.pnode[node]
            if pnode.value_():
                out.append({"kind": "global", "node": node, **queued(pnode.global_dsq, tick_hz)})
    for dsq in scx.user_dsq_objects(prog) or []:
        out.append({"kind": "user", **queued(dsq, tick_hz)})
    return out
