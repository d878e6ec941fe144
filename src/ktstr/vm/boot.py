"""Boot the guest agent once: kernel + accelerator + image -> a finished VM.

Shared by every job that needs a VM (probe, shell, later scenario runs),
so kernel resolution, image assembly and end-of-VM errors live in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktstr import wire
from ktstr.disk import Disk
from ktstr.errors import ConfigError, QemuStartError, VmError
from ktstr.host import mem_available_mib, memory_problem
from ktstr.initramfs.image import base_image, write_initrd
from ktstr.kernel.image import KernelInfo
from ktstr.kernel.modules import guest_modules
from ktstr.text import escape
from ktstr.topology import Topology
from ktstr.vm import drives, lifecycle
from ktstr.vm.accel import Accel
from ktstr.vm.qemu import VmConfig
from ktstr.vm.qmp import Monitor
from ktstr.vm.slots import vm_slot

log = logging.getLogger(__name__)


def default_timeout(topology: Topology, accel: Accel) -> float:
    """Generous: TCG boots slow down with vCPU count on a small host."""
    if accel.name == "kvm":
        return 60.0
    return 90.0 + 4.0 * topology.cpus


@dataclass
class Boot:
    result: lifecycle.VmResult
    kernel: KernelInfo
    accel: Accel
    topology: Topology
    image_build_s: float
    disks: list[drives.PreparedDisk] = field(default_factory=list)


def boot(
    topology: Topology,
    kernel: KernelInfo,
    accel: Accel,
    run_dir: Path,
    spec: dict[str, Any],
    timeout_s: float | None = None,
    interactive: bool = False,
    on_message: Callable[[dict[str, Any]], None] | None = None,
    strict: bool = True,
    files: dict[str, bytes] | None = None,
    cmdline: list[str] | None = None,
    disks: Sequence[Disk] = (),
    on_qmp: Callable[[Monitor], None] | None = None,
    archives: Sequence[Path] = (),
) -> Boot:
    """Run the agent with ``spec`` in a fresh VM.

    With ``strict`` an abnormal end raises VmError; otherwise the caller
    judges it (a scenario run turns a guest panic into a failed verdict).
    Disks get backing files in ``run_dir`` (removed afterwards unless kept).
    """
    problem = memory_problem(topology, mem_available_mib())
    if problem:  # QEMU would die allocating it, or the host's OOM killer would pick it
        raise ConfigError(
            f"topology {topology.name} cannot start here: {problem}",
            "choose a smaller topology (or memory size), or free memory",
        )
    base = base_image()
    if base.built:
        log.info("built the guest base image (%.1f MiB) in %.2f s", base.size / 2**20, base.build_s)
    files = dict(files or {})
    spec = dict(spec)
    if disks:
        spec["modules"], module_files = guest_modules(kernel, "CONFIG_VIRTIO_BLK", "virtio_blk")
        files.update(module_files)
    prepared = drives.prepare(disks, run_dir)
    try:
        spec["disks"] = [p.guest_spec() for p in prepared]
        initrd = write_initrd(run_dir / "initrd.cpio", base, spec, files, archives)
        cfg = VmConfig(
            kernel=kernel.boot_path,
            initrd=str(initrd),
            topology=topology,
            accel=accel.name,
            cmdline=list(cmdline or []),
            interactive=interactive,
            drive_args=drives.qemu_args(prepared),
        )
        timeout = timeout_s or default_timeout(topology, accel)
        limits = lifecycle.StreamLimits.for_run(timeout, planned_workers(spec))
        try:
            with vm_slot():  # host-wide: xdist workers and parallel runs share the budget
                result = lifecycle.run_vm(cfg, run_dir, timeout, on_message, limits, on_qmp)
        finally:
            initrd.unlink(missing_ok=True)
    finally:
        drives.cleanup(prepared)
    if strict:
        check_end(result)
    return Boot(result, kernel, accel, topology, base.build_s, prepared)


def planned_workers(spec: dict[str, Any]) -> int:
    """How many workers a scenario plan spawns (0 for other specs): the channel cap grows
    with them."""
    steps = spec.get("steps") or []
    rounds = [step.get("ops", []) for step in steps]
    rounds += [r.get("ops", []) for step in steps for r in step.get("repeats", [])]
    return sum(len(op.get("ids", [])) for ops in rounds for op in ops if op.get("op") == "spawn")


def check_end(result: lifecycle.VmResult) -> None:
    """Turn an abnormal VM end, or an agent error, into one clear sentence.

    Guest text in the sentence is escaped: it goes to a terminal.
    """
    where = result.run_dir
    if result.end == lifecycle.FLOODED:  # before the error: any message may be missing
        raise VmError(
            f"{result.flooded}; the VM was stopped",
            f"see {where / 'channel.jsonl'} and {where / 'console.log'}; "
            "a scheduler or kernel that makes the guest print without end is the likely cause",
        )
    error = result.first(wire.ERROR)
    if error:
        (where / "agent-traceback.txt").write_text(error.get("traceback", ""))
        message = escape(str(error.get("message")), limit=500)
        raise VmError(
            f"the guest agent failed: {message}",
            f"see {where / 'agent-traceback.txt'} and {where / 'console.log'}",
        )
    if result.end == lifecycle.PANIC:
        panic = escape(result.panic_line, limit=300) if result.panic_line else "pvpanic"
        raise VmError(
            f"the guest kernel panicked ({panic})",
            f"see {where / 'console.log'}",
        )
    if result.end == lifecycle.TIMEOUT:
        seen = "the agent never reported" if not result.messages else "the agent stopped reporting"
        raise VmError(
            f"the VM timed out after {result.exited_s:.0f} s and {seen}",
            f"see {where / 'console.log'}; raise --timeout if the host is slow",
        )
    if result.end == lifecycle.QEMU_FAILED:
        tail = result.stderr_tail.strip().splitlines()
        raise QemuStartError(
            f"QEMU failed (exit {result.exit_code}): "
            + (escape(tail[-1], limit=300) if tail else "no output"),
            f"see {where / 'qemu.stderr.log'}",
        )
    if result.first(wire.DONE) is None:
        raise VmError(
            "the VM powered off before the agent finished", f"see {where / 'console.log'}"
        )


def timings(result: lifecycle.VmResult) -> dict[str, float]:
    """QEMU start -> agent ready -> power-off, in seconds since QEMU started."""
    hello = result.first(wire.HELLO)
    done = result.first(wire.DONE)
    out = {
        "qemu_start_to_agent_ready": hello["host_s"] if hello else None,
        "agent_ready_to_done": (done["host_s"] - hello["host_s"]) if hello and done else None,
        "total": round(result.exited_s, 3),
    }
    if hello:
        out["guest_uptime_at_ready"] = hello.get("uptime_s")
    return {k: round(v, 3) for k, v in out.items() if v is not None}
