"""A worker's memory policy, and what the kernel says of its memory afterwards.

Python has no set_mempolicy, so the raw syscall (x86_64 numbers) through ctypes,
imported lazily: only workers with a policy pay for it.  The worker reports the policy
read back (get_mempolicy), the nodes its cpuset allows (``Mems_allowed_list``) and on
which nodes a probe of fresh pages landed (``numa_maps``), so a test sees the policy
take effect rather than assuming it.
"""

from __future__ import annotations

import mmap
import os

SYS_SET_MEMPOLICY, SYS_GET_MEMPOLICY = 238, 239  # x86_64
MODES = {"default": 0, "preferred": 1, "bind": 2, "interleave": 3, "local": 4}
NAMES = {**{v: k for k, v in MODES.items()}, 5: "preferred_many", 6: "weighted_interleave"}
MODE_FLAGS = 0xE000  # MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
WORDS = 16  # the node mask: 1024 nodes


def _syscall(number: int, *args: object) -> None:
    import ctypes  # lazy (LAZY_IMPORTS packs it)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(number), *args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syscall {number}: {os.strerror(err)}")


def apply(mode: str, nodes: list[int]) -> None:
    """set_mempolicy(mode, nodes) for the calling task."""
    import ctypes

    mask = (ctypes.c_ulong * WORDS)()
    for n in nodes:
        mask[n // 64] |= 1 << (n % 64)
    maxnode = WORDS * 64 + 1 if nodes else 0  # the kernel reads maxnode - 1 bits
    _syscall(
        SYS_SET_MEMPOLICY,
        ctypes.c_long(MODES[mode]),
        mask if nodes else None,
        ctypes.c_ulong(maxnode),
    )


def current() -> dict[str, object]:
    """The task's policy as the kernel reads it back: mode name and nodes."""
    import ctypes

    mode = ctypes.c_int(0)
    mask = (ctypes.c_ulong * WORDS)()
    _syscall(
        SYS_GET_MEMPOLICY,
        ctypes.byref(mode),
        mask,
        ctypes.c_ulong(WORDS * 64 + 1),
        None,
        ctypes.c_ulong(0),
    )
    nodes = [w * 64 + b for w in range(WORDS) for b in range(64) if mask[w] >> b & 1]
    value = mode.value & ~MODE_FLAGS
    return {"mode": NAMES.get(value, str(value)), "nodes": nodes}


def mems_allowed() -> str:
    """The nodes the task's cpuset lets it allocate on, as the kernel lists them."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Mems_allowed_list:"):
                return line.partition(":")[2].strip()
    return ""


PROBE_PAGES = 64


def _vma_start(addr: int) -> int:
    """The start of the mapping that holds ``addr`` (/proc/self/maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, _, hi = line.split(" ", 1)[0].partition("-")
            if int(lo, 16) <= addr < int(hi, 16):
                return int(lo, 16)
    return addr


def probe_pages() -> dict[str, int]:
    """Where new pages land now: a fresh anonymous mapping of ``PROBE_PAGES`` pages is
    touched, and its ``N<node>=<pages>`` counts read from numa_maps."""
    import ctypes

    probe = mmap.mmap(-1, PROBE_PAGES * mmap.PAGESIZE)
    try:
        for offset in range(0, len(probe), mmap.PAGESIZE):
            probe[offset] = 1
        view = ctypes.c_char.from_buffer(probe)
        start = f"{_vma_start(ctypes.addressof(view)):x} "
        del view  # the buffer must not be exported when the mapping closes
        with open("/proc/self/numa_maps") as f:
            line = next((x for x in f if x.startswith(start)), "")
    finally:
        probe.close()
    out = {}
    for token in line.split():
        node, eq, pages = token[1:].partition("=")
        if token.startswith("N") and eq and node.isdigit() and pages.isdigit():
            out[node] = int(pages)
    return out


def report() -> dict[str, object]:
    """The worker's memory facts at its end: the policy read back, the nodes its cpuset
    allows, and where a probe of new pages landed."""
    return {"mempolicy": current(), "mems_allowed": mems_allowed(), "numa_pages": probe_pages()}
