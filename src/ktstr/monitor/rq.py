"""Per-CPU run-queue state, read from the guest kernel's ``struct rq``.

What a scheduler developer looks at first when a CPU misbehaves: how many
tasks it holds (all classes, and sched_ext's own), how deep its local
dispatch queue is, whether its clock still moves, and what runs on it.
Functions take the ``drgn.Program`` first, as drgn's helpers do.
"""

from __future__ import annotations

from typing import Any

import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.sched import cpu_rq


def nr_cpu_ids(prog: drgn.Program) -> int:
    """The kernel's CPU id bound: how many CPUs the guest could have."""
    return int(prog["nr_cpu_ids"].value_())


def possible_cpus(prog: drgn.Program) -> list[int]:
    return list(for_each_possible_cpu(prog))


SCHED_CLASSES = ("stop", "dl", "rt", "fair", "ext", "idle")


def class_names(prog: drgn.Program) -> dict[int, str]:
    """Address of each ``struct sched_class`` the kernel has -> its short name.

    Read once per program (kept in ``prog.cache``): a symbol lookup per
    sample cost 1.6 ms a CPU, most of a 16-CPU sample's time.
    """
    cached = prog.cache.get("ktstr_sched_classes")
    if cached is None:
        cached = {}
        for name in SCHED_CLASSES:
            try:
                cached[prog[f"{name}_sched_class"].address_] = name
            except KeyError:
                continue
        prog.cache["ktstr_sched_classes"] = cached
    return cached


def class_name(prog: drgn.Program, sched_class: drgn.Object) -> str:
    """``fair``, ``ext``, ``idle``, ``rt``, ``dl``, ``stop`` from a ``struct sched_class *``;
    an address that is none of them reads as its hex rather than a guess."""
    address = sched_class.value_()
    return class_names(prog).get(address, hex(address))


def has_scx(prog: drgn.Program) -> bool:
    """Whether the kernel was built with sched_ext (``struct rq`` has ``scx``)."""
    try:
        prog.type("struct rq").member("scx")
    except LookupError:
        return False
    return True


def clock(prog: drgn.Program, cpu: int) -> int:
    """The CPU's ``rq->clock`` in ns: it advances while the CPU takes ticks."""
    return int(cpu_rq(prog, cpu).clock.value_())


def sample(prog: drgn.Program, cpu: int, scx: bool | None = None) -> dict[str, Any]:
    """One CPU's run-queue state as plain values (JSON-ready).

    ``scx``: whether to read the sched_ext fields (``has_scx`` once, not per
    sample).  A task's comm comes from guest memory: it is decoded with
    replacement, never trusted as text.
    """
    rq = cpu_rq(prog, cpu)
    curr = rq.curr
    out: dict[str, Any] = {
        "cpu": cpu,
        "nr_running": int(rq.nr_running.value_()),
        "clock": int(rq.clock.value_()),
        "curr_pid": int(curr.pid.value_()),
        "curr_comm": curr.comm.string_().decode(errors="replace"),
        "curr_class": class_name(prog, curr.sched_class),
    }
    if scx is None:
        scx = has_scx(prog)
    if scx:
        out["scx_nr_running"] = int(rq.scx.nr_running.value_())
        out["local_dsq_nr"] = int(rq.scx.local_dsq.nr.value_())
    return out


def sample_all(prog: drgn.Program, cpus: list[int], scx: bool | None = None) -> list[dict]:
    """``sample`` for each of ``cpus``."""
    if scx is None:
        scx = has_scx(prog)
    return [sample(prog, cpu, scx) for cpu in cpus]
