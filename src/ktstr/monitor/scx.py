"""sched_ext's global state: is a BPF scheduler loaded, which, its event counters and
its dispatch queues.

The same values the kernel's ``tools/sched_ext/scx_show_state.py`` prints,
plus the ``SCX_EV_*`` counters the kernel keeps per CPU for the root
scheduler and the depth of each DSQ the scheduler created.  Kernels
differ in which of these exist: each function says None (or leaves a key
out) for what the guest kernel lacks, never guesses.
"""

from __future__ import annotations

from typing import Any

import drgn
from drgn import container_of
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.percpu import per_cpu, per_cpu_ptr


def variable(prog: drgn.Program, name: str) -> drgn.Object | None:
    """A kernel variable, or None when this kernel has none of that name."""
    try:
        return prog[name]
    except KeyError:
        return None


def enable_state(prog: drgn.Program) -> str | None:
    """``SCX_ENABLED``, ``SCX_DISABLED``, ... from ``scx_enable_state_var``; None without
    sched_ext."""
    var = variable(prog, "scx_enable_state_var")
    if var is None:
        return None
    value = int(var.counter.value_())
    try:
        enum = prog.type("enum scx_enable_state")
    except LookupError:
        return str(value)
    names = {v: n for n, v in (enum.enumerators or ())}
    return names.get(value, str(value))


def root(prog: drgn.Program) -> drgn.Object | None:
    """The root ``struct scx_sched *`` while a BPF scheduler is attached, else None."""
    sch = variable(prog, "scx_root")
    if sch is None or not sch.value_():
        return None
    return sch


def ops_name(prog: drgn.Program) -> str | None:
    """The attached scheduler's ``ops.name`` (e.g. ``qmap``), None when none is attached."""
    sch = root(prog)
    if sch is None:
        return None
    return sch.ops.name.string_().decode(errors="replace")


def events(prog: drgn.Program) -> dict[str, int] | None:
    """The root scheduler's ``SCX_EV_*`` counters summed over CPUs, by name.

    The fields are read from ``struct scx_event_stats`` itself, so a kernel
    that adds a counter gets it reported.  Kernels keep them either in the
    scheduler's per-CPU block (``scx_root->pcpu->event_stats``) or, before
    that, in the global per-CPU ``scx_event_stats_cpu``; None when neither
    exists or no scheduler is attached.
    """
    try:
        stats_type = prog.type("struct scx_event_stats")
    except LookupError:
        return None
    names = [m.name for m in stats_type.members or () if m.name]
    cpus = list(for_each_possible_cpu(prog))
    sch = root(prog)
    per_cpu_stats: list[drgn.Object]
    if sch is not None and has_member(sch.type_.type, "pcpu"):
        per_cpu_stats = [per_cpu_ptr(sch.pcpu, cpu).event_stats for cpu in cpus]
    elif sch is not None and variable(prog, "scx_event_stats_cpu") is not None:
        var = prog["scx_event_stats_cpu"]
        per_cpu_stats = [per_cpu(var, cpu) for cpu in cpus]
    else:
        return None
    totals = dict.fromkeys(names, 0)
    for stats in per_cpu_stats:
        for name in names:
            totals[name] += int(getattr(stats, name).value_())
    return totals


MAX_DSQS = 4096  # user DSQs read per call; a scheduler has a handful, a bad table no more
MAX_BUCKETS = 1 << 16


def _rhashtable_entries(table: drgn.Object, type_name: str, member: str) -> list[drgn.Object]:
    """Entries of a kernel ``struct rhashtable`` (its current bucket table), bounded.

    A bucket holds a chain of ``struct rhash_head`` whose end is an odd
    "nulls" value, and its pointer's low bit is a lock bit.  A nested
    table (allocated in pieces under memory pressure) is not walked.
    """
    tbl = table.tbl
    if not tbl.value_() or tbl.nest.value_():
        return []
    prog = table.prog_
    size = min(int(tbl.size.value_()), MAX_BUCKETS)
    head_type = prog.type("struct rhash_head *")
    out: list[drgn.Object] = []
    for i in range(size):
        node = tbl.buckets[i].value_() & ~1
        while node and not node & 1 and len(out) < MAX_DSQS:
            head = drgn.Object(prog, head_type, node)
            out.append(container_of(head, type_name, member))
            node = head.next.value_()
    return out


def user_dsqs(prog: drgn.Program) -> list[dict[str, int]] | None:
    """The attached scheduler's own dispatch queues: ``id`` and ``nr`` (queued tasks),
    by id; None when no scheduler is attached or the kernel keeps them elsewhere.

    Kernels with a per-scheduler ``scx_root->dsq_hash`` and those with the
    older global ``dsq_hash`` are both read.
    """
    dsqs = user_dsq_objects(prog)
    if dsqs is None:
        return None
    return sorted(({"id": int(d.id.value_()), "nr": int(d.nr.value_())} for d in dsqs),
                  key=lambda d: d["id"])  # fmt: skip


def user_dsq_objects(prog: drgn.Program) -> list[drgn.Object] | None:
    """The scheduler's own ``struct scx_dispatch_q`` objects (at most ``MAX_DSQS``); None
    when no scheduler is attached or the kernel keeps them elsewhere."""
    sch = root(prog)
    if sch is None:
        return None
    if has_member(sch.type_.type, "dsq_hash"):
        table = sch.dsq_hash
    else:
        table = variable(prog, "dsq_hash")
        if table is None:
            return None
    return _rhashtable_entries(table, "struct scx_dispatch_q", "hash_node")


def watchdog_timeout(prog: drgn.Program) -> int | None:
    """The attached scheduler's watchdog timeout in jiffies (a runnable task waiting longer
    ejects the scheduler); None without a scheduler or the field."""
    sch = root(prog)
    if sch is not None and has_member(sch.type_.type, "watchdog_timeout"):
        return int(sch.watchdog_timeout.value_())
    var = variable(prog, "scx_watchdog_timeout")
    return int(var.value_()) if var is not None else None


def exit_kind(prog: drgn.Program) -> str | None:
    """``SCX_EXIT_ERROR_STALL`` and the like once the scheduler is exiting; None while it
    runs normally (``SCX_EXIT_NONE``) or when none is attached.

    The kernel claims the exit in ``sch->exit_kind`` and, once its disable work runs,
    moves the kind to ``exit_info->kind`` and leaves ``SCX_EXIT_DONE`` behind: both
    places are read.
    """
    sch = root(prog)
    if sch is None:
        return None
    values = []
    if has_member(sch.type_.type, "exit_info") and sch.exit_info.value_():
        values.append(int(sch.exit_info.kind.value_()))
    if has_member(sch.type_.type, "exit_kind"):
        values.append(_int(sch.exit_kind))
    for value in values:
        name = _enum_name(prog, "enum scx_exit_kind", value) if value else None
        if name and name not in ("SCX_EXIT_NONE", "SCX_EXIT_DONE"):
            return name
    return None


MAX_EXIT_TEXT = 64 * 1024  # the exit's message and debug dump, each


def exit_info(prog: drgn.Program) -> dict[str, Any] | None:
    """The scheduler's exit record (kind, reason, message, the kernel's debug dump) once it
    is exiting; None before."""
    sch = root(prog)
    if sch is None or not has_member(sch.type_.type, "exit_info"):
        return None
    info = sch.exit_info
    if not info.value_():
        return None
    kind = int(info.kind.value_())
    if kind == 0:
        return None
    out: dict[str, Any] = {
        "kind": _enum_name(prog, "enum scx_exit_kind", kind),
        "exit_code": int(info.exit_code.value_()),
    }
    if has_member(info.type_.type, "exit_cpu"):
        out["exit_cpu"] = int(info.exit_cpu.value_())
    for name in ("reason", "msg", "dump"):
        ptr = getattr(info, name)
        if ptr.value_():
            limit = MAX_EXIT_TEXT if name == "dump" else 4096
            out[name] = _cstring(ptr, limit).decode(errors="replace")
    return out


def _cstring(ptr: drgn.Object, limit: int = 4096) -> bytes:
    """A NUL-terminated string from guest memory, at most ``limit`` bytes."""
    prog = ptr.prog_
    address = ptr.value_()
    out = b""
    while len(out) < limit:
        chunk = prog.read(address + len(out), 256 - (address + len(out)) % 256)
        end = chunk.find(b"\0")
        if end >= 0:
            return out + chunk[:end]
        out += chunk
    return out


def _enum_name(prog: drgn.Program, enum: str, value: int) -> str:
    try:
        names = {v: n for n, v in (prog.type(enum).enumerators or ())}
    except LookupError:
        return str(value)
    return names.get(value, str(value))


def _int(obj: drgn.Object) -> int:
    """An integer, bool or ``atomic_t`` field as an int (kernels changed some field types)."""
    real = obj.type_
    while real.kind == drgn.TypeKind.TYPEDEF:  # atomic_t is a typedef of a struct
        real = real.type
    if real.kind == drgn.TypeKind.STRUCT and has_member(real, "counter"):
        obj = obj.counter
    return int(obj.value_())


def has_member(type_: drgn.Type, name: str) -> bool:
    """Whether a struct type has the member: kernels add and drop the fields read here."""
    try:
        type_.member(name)
    except LookupError:
        return False
    return True


def state(prog: drgn.Program) -> dict[str, Any]:
    """The global sched_ext state as plain values: what scx_show_state.py shows first."""
    out: dict[str, Any] = {"enable_state": enable_state(prog), "ops": ops_name(prog)}
    for name in ("scx_nr_rejected", "scx_enable_seq"):
        var = variable(prog, name)
        if var is not None:
            out[name.removeprefix("scx_")] = int(var.counter.value_())
    sch = root(prog)
    if sch is not None:
        for name in ("aborting", "bypass_depth"):
            if has_member(sch.type_.type, name):
                out[name] = _int(getattr(sch, name))
    return out
