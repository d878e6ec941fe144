"""Guest RAM as the host sees it: QEMU's per-node memfds, read-only.

ktstr gives every NUMA node a ``memory-backend-memfd,id=mem<N>,share=on``
object, so the host can open the same memory through
``/proc/<qemu pid>/fd/*`` (links read ``/memfd:mem<N> (deleted)``, or
``/memfd:memory-backend-memfd (deleted)`` on QEMU 7.2) without changing
QEMU's command line or pausing the guest.  On the ``pc`` machine
the nodes' memory is one concatenated RAM block: the part below the
low-memory split sits at guest-physical address 0, the rest at 4 GiB.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ktstr.errors import ConfigError, VmError

MIB = 1 << 20
GIB = 1 << 30
FOUR_GIB = 4 * GIB
# QEMU's pc machine: RAM below 4 GiB ends at 3.5 GiB (max-ram-below-4g) while it all
# fits; a larger guest gets only 3 GiB there (gigabyte alignment), the rest above 4 GiB.
PC_MAX_RAM_BELOW_4G = 0xE0000000
PC_LOWMEM_GIGABYTE_ALIGNED = 0xC0000000
# q35: all RAM low below 2.75 GiB; from there on, 2 GiB low and the rest above 4 GiB.
Q35_SPLIT_FROM = 0xB0000000
Q35_LOWMEM = 0x80000000
MACHINES = ("pc", "q35")
_MEMFD_LINK = re.compile(r"^/memfd:mem(\d+) \(deleted\)$")
_GENERIC_MEMFD = "/memfd:memory-backend-memfd (deleted)"


@dataclass(frozen=True)
class Segment:
    """``size`` bytes of node ``node``'s memfd, from ``offset``, at guest-physical ``gpa``."""

    gpa: int
    node: int
    offset: int
    size: int


def machine_of(argv: list[str]) -> str | None:
    """``pc`` or ``q35`` from a QEMU command line (its ``-M``/``-machine``), or the
    name given when it is neither, or None when there is none (QEMU's default, pc)."""
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("-M", "-machine"):
            name = value.split(",", 1)[0].removeprefix("type=")
            if name == "pc" or name.startswith("pc-i440fx"):
                return "pc"
            if name == "q35" or name.startswith("pc-q35"):
                return "q35"
            return name
    return None


def below_4g(machine: str, ram_bytes: int) -> int:
    """How much of the RAM block QEMU's ``machine`` maps below 4 GiB."""
    if machine == "pc":
        return PC_LOWMEM_GIGABYTE_ALIGNED if ram_bytes >= PC_MAX_RAM_BELOW_4G else ram_bytes
    if machine == "q35":
        return Q35_LOWMEM if ram_bytes >= Q35_SPLIT_FROM else ram_bytes
    raise VmError(
        f"the monitor does not know the RAM layout of QEMU's {machine!r} machine",
        f"run the VM on one of: {', '.join(MACHINES)}",
    )


def ram_layout(node_bytes: list[int], machine: str = "pc") -> list[Segment]:
    """The guest-physical segments of QEMU's x86 ``pc`` (or ``q35``) machine for nodes of
    these sizes.

    The node memdevs are concatenated in node order into one RAM block;
    its first ``below_4g`` bytes are at 0, the rest at 4 GiB.  The holes
    below 1 MiB (VGA, BIOS) overlay RAM in the guest's view, but the
    kernel never uses them as memory, so they need no special case.
    """
    if not node_bytes or any(n <= 0 for n in node_bytes):
        raise ConfigError(f"node sizes {node_bytes} are not all positive", "give each node memory")
    low = below_4g(machine, sum(node_bytes))
    windows = [(0, low, 0)]  # (block start, block end, guest-physical base)
    if sum(node_bytes) > low:
        windows.append((low, sum(node_bytes), FOUR_GIB))
    segments = []
    start = 0
    for node, size in enumerate(node_bytes):
        end = start + size
        for w_start, w_end, base in windows:
            lo, hi = max(start, w_start), min(end, w_end)
            if lo < hi:
                segments.append(Segment(base + lo - w_start, node, lo - start, hi - lo))
        start = end
    return segments


@dataclass(frozen=True)
class Memfd:
    """One of QEMU's memfds: where to open it, its node when its name says, its size."""

    path: Path
    fd: int
    node: int | None  # from /memfd:mem<N>; None when QEMU names them all alike
    size: int


def memfds(pid: int) -> list[Memfd]:
    """QEMU's guest-RAM memfds, in fd order.

    Newer QEMU names each memfd after its backend object (``/memfd:mem0``);
    QEMU 7.2 names them all ``/memfd:memory-backend-memfd``, so which node
    is which must then be worked out (``assignments``).
    """
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = sorted(fd_dir.iterdir(), key=lambda p: int(p.name))
    except (OSError, ValueError) as err:
        raise VmError(
            f"cannot list QEMU's open files in {fd_dir} ({err})",
            "run the monitor as the user that runs QEMU, while the VM is running",
        ) from None
    found = []
    for entry in entries:
        try:
            link = os.readlink(entry)
            size = os.stat(entry).st_size
        except OSError:
            continue
        match = _MEMFD_LINK.match(link)
        if match or link == _GENERIC_MEMFD:
            node = int(match.group(1)) if match else None
            found.append(Memfd(entry, int(entry.name), node, size))
    return found


def assignments(fds: list[Memfd], node_bytes: list[int], limit: int = 24) -> list[list[int]]:
    """Ways to give each node one memfd (node -> index into ``fds``), likeliest first.

    Named memfds give one answer.  Unnamed ones must match the node sizes;
    among equal sizes, fd order (creation order, usually) comes first and
    the other orders follow, at most ``limit`` in all, for the attach to
    verify against the kernel's own view of its nodes.
    """
    if fds and all(f.node is not None for f in fds):
        by_node = {f.node: i for i, f in enumerate(fds)}
        if all(n in by_node and fds[by_node[n]].size == b for n, b in enumerate(node_bytes)):
            return [[by_node[n] for n in range(len(node_bytes))]]
        return []
    out: list[list[int]] = []
    for perm in itertools.permutations(range(len(fds)), len(node_bytes)):
        if all(fds[i].size == b for i, b in zip(perm, node_bytes, strict=True)):
            out.append(list(perm))
            if len(out) >= limit:
                break
    return out


class GuestMemory:
    """Read-only access to a running QEMU's guest RAM through its memfds.

    Reads are ``pread`` calls, not a mapping: a page fault on a shared
    mapping of a memfd hole allocates the page, so scanning a mapped 4 GiB
    guest once made the host allocate all 4 GiB (measured), while a read
    of a hole returns zeros and allocates nothing.  ``assignment[node]``
    says which memfd holds a node's memory; the readers look it up on every
    read, so the attach can try another assignment without rebuilding the
    drgn program.  Reads race with the running guest, as a sample must: a
    value may be mid-update, never out of bounds.  ``close()`` closes the
    files; QEMU is unaffected.
    """

    def __init__(self, pid: int, node_bytes: list[int], machine: str = "pc") -> None:
        self.segments = ram_layout(node_bytes, machine)
        self.fds = memfds(pid)
        self.candidates = assignments(self.fds, node_bytes)
        if not self.candidates:
            sizes = [f.size for f in self.fds]
            raise VmError(
                f"QEMU (pid {pid}) has memfds of {sizes} bytes, which do not match the "
                f"topology's nodes of {node_bytes} bytes, so its guest RAM cannot be mapped",
                "attach with the topology the VM was started with; the VM must use ktstr's "
                "memory-backend-memfd objects (one per node)",
            )
        self.assignment = self.candidates[0]
        self.files: dict[int, int] = {}
        try:
            for i in sorted({i for a in self.candidates for i in a}):
                self.files[i] = os.open(self.fds[i].path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def pread(self, mapping: int, offset: int, count: int) -> bytes:
        """``count`` bytes of one memfd (short only past its end)."""
        return os.pread(self.files[mapping], count, offset)

    def reader(self, segment: Segment):
        """A drgn ``read_fn`` for one segment: (address, count, offset, physical) -> bytes."""
        node, base = segment.node, segment.offset

        def read(address: int, count: int, offset: int, physical: bool) -> bytes:
            return self.pread(self.assignment[node], base + offset, count)

        return read

    def extents(self, mapping: int) -> list[tuple[int, int]]:
        """(start, end) of the memfd's data: the guest never touched the holes."""
        fd, size = self.files[mapping], self.fds[mapping].size
        out, pos = [], 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data past pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, min(end, size)))
            pos = end
        return out

    def find(self, needle: bytes, limit: int = 16, chunk: int = 8 * MIB) -> list[tuple[int, int]]:
        """(memfd, offset) pairs where ``needle`` starts, at most ``limit``.

        Only the memfds' data extents are read, in chunks that overlap by
        the needle's length.  By memfd, not address, so one scan serves
        every assignment.
        """
        hits: list[tuple[int, int]] = []
        for mapping in self.files:
            for start, end in self.extents(mapping):
                pos = start
                while pos < end and len(hits) < limit:
                    data = self.pread(mapping, pos, min(chunk, end - pos) + len(needle) - 1)
                    at = data.find(needle)
                    while at >= 0 and len(hits) < limit:
                        if pos + at < end:
                            hits.append((mapping, pos + at))
                        at = data.find(needle, at + 1)
                    pos += chunk
        return hits

    def gpa(self, mapping: int, offset: int) -> int | None:
        """The guest-physical address of a memfd's byte under the current assignment."""
        if mapping not in self.assignment:
            return None
        node = self.assignment.index(mapping)
        for seg in self.segments:
            if seg.node == node and seg.offset <= offset < seg.offset + seg.size:
                return seg.gpa + offset - seg.offset
        return None

    def read(self, gpa: int, size: int) -> bytes:
        """``size`` bytes at a guest-physical address within one segment."""
        for seg in self.segments:
            if seg.gpa <= gpa and gpa + size <= seg.gpa + seg.size:
                return self.pread(self.assignment[seg.node], seg.offset + gpa - seg.gpa, size)
        raise ValueError(f"guest-physical range {gpa:#x}+{size:#x} is not in guest RAM")

    def close(self) -> None:
        for fd in self.files.values():
            os.close(fd)
        self.files = {}
