"""Read the CPU topology and sched_ext state the guest kernel really has."""

from __future__ import annotations

import os

_CPU = "/sys/devices/system/cpu"
_NODE = "/sys/devices/system/node"
_SCX = "/sys/kernel/sched_ext"


def parse_cpulist(text: str) -> list[int]:
    """``0-3,8,10-11`` -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def read(path: str) -> str | None:
    """A sysfs/procfs file, stripped; None if it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _groups(lists: list[list[int]]) -> list[list[int]]:
    unique = {tuple(sorted(g)) for g in lists if g}
    return [list(g) for g in sorted(unique)]


def _llc_of(cpu: int) -> list[int]:
    """CPUs sharing ``cpu``'s last-level cache (the highest cache index)."""
    base = f"{_CPU}/cpu{cpu}/cache"
    try:
        indexes = sorted(
            (int(read(f"{base}/{d}/level") or 0), d)
            for d in os.listdir(base)
            if d.startswith("index")
        )
    except OSError:
        return [cpu]
    if not indexes:
        return [cpu]
    shared = read(f"{base}/{indexes[-1][1]}/shared_cpu_list")
    return parse_cpulist(shared) if shared else [cpu]


def observed_topology() -> dict[str, object]:
    """The topology in the wire form: cpus, numa_nodes, llcs, smt_siblings (+ distances)."""
    online = parse_cpulist(read(f"{_CPU}/online") or "0")
    smt = [
        parse_cpulist(read(f"{_CPU}/cpu{c}/topology/thread_siblings_list") or str(c))
        for c in online
    ]
    packages = {c: read(f"{_CPU}/cpu{c}/topology/physical_package_id") for c in online}
    nodes: list[list[int]] = []
    distances: list[list[int]] = []
    try:
        names = sorted(
            (int(d[4:]), d) for d in os.listdir(_NODE) if d.startswith("node") and d[4:].isdigit()
        )
    except OSError:
        names = []
    for _, name in names:
        cpus = parse_cpulist(read(f"{_NODE}/{name}/cpulist") or "")
        if cpus:
            nodes.append(cpus)
            distances.append([int(x) for x in (read(f"{_NODE}/{name}/distance") or "").split()])
    if not nodes:
        nodes = [online]
    return {
        "cpus": len(online),
        "numa_nodes": nodes,
        "llcs": _groups([_llc_of(c) for c in online]),
        "smt_siblings": _groups(smt),
        "numa_distances": distances,
        "packages": len(set(packages.values())),
    }


def sched_ext_state() -> dict[str, object]:
    """Whether the kernel has sched_ext and, if so, its state and counters."""
    if not os.path.isdir(_SCX):
        return {"present": False}
    info: dict[str, object] = {"present": True}
    for key in ("state", "switch_all", "nr_rejected", "hotplug_seq", "enable_seq"):
        value = read(f"{_SCX}/{key}")
        if value is not None:
            info[key] = int(value) if value.isdigit() else value
    ops = read(f"{_SCX}/root/ops")
    if ops is not None:
        info["ops"] = ops
    return info


# Kernel log lines that split the boot into phases, by name.
_MARKS = {
    "initramfs_unpack_start": "Trying to unpack rootfs image as initramfs",
    "initramfs_unpacked": "Freeing initrd memory",
    "init_started": "Run /init as init process",
}


def boot_marks(path: str = "/dev/kmsg") -> dict[str, float]:
    """Seconds since boot at which the kernel logged each phase of the boot."""
    marks: dict[str, float] = {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return marks
    try:
        while len(marks) < len(_MARKS):
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:  # EPIPE: a record was overwritten; keep reading
                continue
            head, _, text = record.partition(";")
            for name, needle in _MARKS.items():
                if name not in marks and text.startswith(needle):
                    marks[name] = int(head.split(",")[2]) / 1e6
    finally:
        os.close(fd)
    return marks
