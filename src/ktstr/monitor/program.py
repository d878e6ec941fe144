"""Attach drgn to a running ktstr VM: its guest RAM, its kernel's layout, its DWARF.

No guest cooperation and no QEMU option: guest RAM is read through QEMU's
memfds (``memory.py``), the kernel's KASLR offset and page-table root come
from its own VMCOREINFO note (``vmcoreinfo.py``), and types and variables
from the kernel's debug info (``ktstr.kernel.debuginfo``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import drgn
from drgn.helpers.linux.mm import virt_to_phys

from ktstr.errors import VmError
from ktstr.monitor import vmcoreinfo
from ktstr.monitor.memory import MIB, GuestMemory, machine_of
from ktstr.topology import Topology

log = logging.getLogger(__name__)

X86_64 = drgn.Platform(
    drgn.Architecture.X86_64,
    drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN,
)
MAX_CANDIDATES = 8  # VMCOREINFO look-alikes tried before giving up (guest pages can mimic it)


@dataclass
class Attached:
    """A drgn ``Program`` over a live guest, and what keeps it readable."""

    prog: drgn.Program
    memory: GuestMemory
    vmcoreinfo: dict[str, str]
    note_gpa: int  # guest-physical address of the VMCOREINFO note
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kaslr_offset(self) -> int:
        return vmcoreinfo.kernel_offset(self.vmcoreinfo)

    def close(self) -> None:
        """Close QEMU's memfds (held open, they keep the guest's RAM allocated after QEMU
        exits); the program must not be read afterwards."""
        self.memory.close()


def node_bytes(topology: Topology) -> list[int]:
    """Bytes of RAM per NUMA node, as ktstr's QEMU arguments give them."""
    return [mib * MIB for mib in topology.node_memory()]


def _program(memory: GuestMemory, desc: bytes, debug: Path) -> drgn.Program:
    prog = drgn.Program(X86_64)
    for seg in memory.segments:
        prog.add_memory_segment(seg.gpa, seg.size, memory.reader(seg), physical=True)
    prog.set_linux_kernel_custom(desc, True)
    try:
        prog.load_debug_info([debug], main=True)
    except drgn.MissingDebugInfoError as err:
        raise VmError(
            f"drgn found no debug info for the guest kernel in {debug} ({err})",
            "give the monitor the kernel's own debug info ('ktstr kernel fetch --debug')",
        ) from None
    return prog


def _machine(pid: int) -> str:
    """The QEMU machine type of process ``pid``: its RAM layout depends on it."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError as err:
        raise VmError(
            f"cannot read QEMU's command line (pid {pid}: {err.strerror})",
            "attach while the VM is running, as the user that runs QEMU",
        ) from None
    return machine_of(argv) or "pc"


def _genuine(prog: drgn.Program, note_gpa: int | None) -> bool:
    """Whether the kernel's own ``vmcoreinfo_note`` pointer names the page at ``note_gpa``.

    A guest process can put a look-alike note in its memory; only the one
    the kernel points at carries the real layout.
    """
    if note_gpa is None:
        return False
    try:
        return virt_to_phys(prog["vmcoreinfo_note"]).value_() == note_gpa
    except (drgn.FaultError, LookupError, ValueError):
        return False


def _nodes_match(prog: drgn.Program, memory: GuestMemory) -> bool:
    """Whether each node's memory is where the kernel says: its ``pglist_data`` (kept in
    the node's own memory) reads back its node id and its first page frame.

    This tells apart memfds that QEMU names alike and that have equal sizes.
    """
    nodes = sorted({seg.node for seg in memory.segments})
    if len(nodes) == 1:
        return True
    try:
        node_data = prog["node_data"]
        for node in nodes:
            pgdat = node_data[node]
            if pgdat.node_id.value_() != node:
                return False
            # The node's first usable page, not its first byte: x86 reserves page 0.
            start = pgdat.node_start_pfn.value_() * vmcoreinfo.PAGE
            where = [s for s in memory.segments if s.gpa <= start < s.gpa + s.size]
            if not where or where[0].node != node:
                return False
    except (drgn.FaultError, LookupError, ValueError):
        return False
    return True


def attach(pid: int, topology: Topology, debug: Path, release: str | None = None) -> Attached:
    """A drgn program over the guest of the QEMU process ``pid``, booted with ``topology``.

    ``debug`` is a vmlinux with DWARF for the guest kernel (see
    ``debuginfo.find``); ``release``, when given, must be what the guest runs.
    """
    t0 = time.monotonic()
    memory = GuestMemory(pid, node_bytes(topology), _machine(pid))
    try:
        t1 = time.monotonic()
        # The needle starts after the 12-byte note header; the note starts a page.
        hits = [(m, off - 12) for m, off in memory.find(vmcoreinfo.NEEDLE, limit=64)]
        notes = [(m, off) for m, off in hits if off >= 0 and off % vmcoreinfo.PAGE == 0]
        t2 = time.monotonic()
        if not notes:
            raise VmError(
                f"no VMCOREINFO note in the guest's {len(memory.segments)} RAM segment(s)",
                "attach once the guest kernel has booted; the kernel needs CONFIG_VMCORE_INFO",
            )
        refused: list[VmError] = []
        problems: list[str] = []
        tried: set[bytes] = set()
        for m, off in notes[:MAX_CANDIDATES]:
            desc = vmcoreinfo.note_at(memory.pread(m, off, vmcoreinfo.PAGE))
            if desc is None or desc in tried:
                continue
            tried.add(desc)
            try:
                fields = vmcoreinfo.parse(desc)
                vmcoreinfo.check(fields, release)
            except ValueError as err:
                problems.append(str(err))
                continue
            except VmError as err:
                refused.append(err)
                continue
            prog = _program(memory, desc, debug)
            for assignment in memory.candidates:
                memory.assignment = assignment
                same = [
                    memory.gpa(m2, o2)
                    for m2, o2 in notes
                    if vmcoreinfo.note_at(memory.pread(m2, o2, vmcoreinfo.PAGE)) == desc
                ]
                gpa = next((g for g in same if _genuine(prog, g)), None)
                if gpa is not None and _nodes_match(prog, memory):
                    t3 = time.monotonic()
                    timings = {
                        "map_s": round(t1 - t0, 4),
                        "scan_s": round(t2 - t1, 4),
                        "debug_info_s": round(t3 - t2, 4),
                        "total_s": round(t3 - t0, 4),
                    }
                    log.debug("monitor attached to QEMU %d: %s", pid, timings)
                    return Attached(prog, memory, fields, gpa, timings)
            problems.append("the kernel does not point at any copy of its note found")
        if refused:
            raise refused[0]
        raise VmError(
            "no genuine VMCOREINFO note in guest RAM"
            + (f" ({'; '.join(problems[:3])})" if problems else ""),
            "check that the VM runs the kernel the debug info is for",
        )
    except BaseException:
        memory.close()
        raise
