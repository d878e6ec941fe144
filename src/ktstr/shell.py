"""``ktstr shell``: a VM for a person (interactive) or for one command (``--exec``).

Either way the guest may get include files, disks and a scheduler under
test; with ``--exec`` the command's output is printed as it arrives and
its exit status becomes ours.  With ``dmesg`` the kernel prints all its
messages on the console, which ``--exec`` copies to stderr as they come.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ktstr import paths, wire
from ktstr.disk import Disk
from ktstr.errors import KernelError, VmError
from ktstr.initramfs.include import pack as pack_includes
from ktstr.scheduler import EEVDF, Scheduler
from ktstr.text import escape
from ktstr.topology import Topology

DMESG_CMDLINE = ("loglevel=7",)  # info and worse: what dmesg shows by default
EXEC_MARGIN_S = 60.0  # beyond boot and --exec-timeout, before the host kills the VM


@dataclass
class ShellRequest:
    topology: Topology
    kernel: str | None = None
    accel: str | None = None
    timeout_s: float | None = None
    disks: Sequence[Disk] = ()
    include: Sequence[str] = ()
    scheduler: Scheduler = EEVDF
    profile: str | None = None
    sched_args: tuple[str, ...] = ()
    command: str | None = None  # None: an interactive shell
    exec_timeout_s: float | None = None
    dmesg: bool = False
    files: dict[str, bytes] = field(default_factory=dict)


def run_shell(req: ShellRequest) -> int:
    """Boot, run the shell or the command, power off; the command's exit status, or 0."""
    from ktstr.kernel import store
    from ktstr.runner import pack_scheduler
    from ktstr.vm import accel as accel_mod
    from ktstr.vm.boot import boot, default_timeout

    files = pack_includes([*req.include, *req.scheduler.config_files()])  # before booting
    info = store.resolve(req.kernel)
    spec: dict[str, Any] = {"mode": "shell" if req.command is None else "exec"}
    if not req.scheduler.is_eevdf:
        if info.sched_ext is False:
            raise KernelError(
                f"kernel {info.release} lacks CONFIG_SCHED_CLASS_EXT, so {req.scheduler.name} "
                "cannot run on it",
                "use a sched_ext kernel ('ktstr kernel fetch')",
            )
        args = req.scheduler.profile(req.profile).args + req.sched_args
        spec["scheduler"], sched_files = pack_scheduler(
            req.scheduler, args + req.scheduler.config_args(), info.release
        )
        files.update(sched_files)
    chosen = accel_mod.choose(req.accel, info.boot_path)
    topology = req.topology
    print(f"{chosen.line()}; kernel {info.release}; topology {topology.name}", file=sys.stderr)
    run_dir = paths.new_run_dir(f"{'shell' if req.command is None else 'exec'}-{topology.name}")
    for i, disk in enumerate(req.disks):
        print(f"disk {i}: {disk.describe(i)}", file=sys.stderr)
    for guest in sorted({p.split("/")[2] for p in files if p.startswith("/include-files/")}):
        print(f"include: /include-files/{guest}", file=sys.stderr)
    timeout = req.timeout_s
    if req.command is not None:
        spec["command"] = req.command
        spec["timeout_s"] = req.exec_timeout_s
        if req.exec_timeout_s is not None:
            bound = default_timeout(topology, chosen) + req.exec_timeout_s + EXEC_MARGIN_S
            timeout = min(timeout or bound, bound)
    printer = _Printer()
    follow = None
    if req.dmesg and req.command is not None:
        follow = _Follow(run_dir / "console.log", sys.stderr)
        follow.start()
    try:
        done = boot(
            topology,
            info,
            chosen,
            run_dir,
            spec,
            timeout_s=timeout,
            interactive=req.command is None,
            on_message=printer.on_message if req.command is not None else None,
            files=files,
            cmdline=[*req.scheduler.kernel_args, *(DMESG_CMDLINE if req.dmesg else ())],
            disks=req.disks,
        )
    finally:
        if follow:
            follow.finish()
    if req.command is None:
        return 0
    return exit_status(done.result.first(wire.EXEC_END), req.exec_timeout_s, run_dir)


def exit_status(end: dict[str, Any] | None, exec_timeout_s: float | None, run_dir: Path) -> int:
    """The command's exit code (128 + N for signal N); one sentence when it has none."""
    if end is None:
        raise VmError(
            "the guest powered off without the command's exit status",
            f"see {run_dir / 'console.log'}",
        )
    if end.get("timed_out"):
        raise VmError(
            f"the command was still running after {exec_timeout_s:g} s (--exec-timeout); it "
            "was killed and the VM powered off",
            "raise --exec-timeout, or make the command end sooner",
        )
    if end.get("skipped"):
        raise VmError(
            f"the command did not run: {end['skipped']}",
            f"see {run_dir / 'channel.jsonl'} and {run_dir / 'console.log'}",
        )
    if end.get("signal") is not None:
        return 128 + int(end["signal"])
    return int(end.get("code", 0))


def _write(out: TextIO, text: str) -> None:
    """Guest text to a terminal is escaped (no control sequences); to a pipe or file it
    goes as it came."""
    out.write(escape(text, multiline=True) if out.isatty() else text)
    out.flush()


class _Printer:
    """Writes the command's output chunks to our stdout and stderr as they arrive."""

    def on_message(self, msg: dict[str, Any]) -> None:
        if msg["kind"] == wire.EXEC_OUTPUT:
            _write(sys.stderr if msg["stream"] == "stderr" else sys.stdout, msg["data"])


class _Follow(threading.Thread):
    """Copies a growing file (the console log) to ``out`` until told to finish."""

    POLL_S = 0.1

    def __init__(self, path: Path, out: TextIO) -> None:
        super().__init__(daemon=True, name="ktstr-dmesg")
        self.path, self.out = path, out
        self.done = threading.Event()

    def run(self) -> None:
        while not self.path.exists() and not self.done.is_set():
            time.sleep(self.POLL_S)
        try:
            with open(self.path, errors="replace") as f:
                while True:
                    finishing = self.done.is_set()  # read once more after the VM ended
                    text = f.read()
                    if text:
                        _write(self.out, text)
                    elif finishing:
                        return
                    else:
                        time.sleep(self.POLL_S)
        except FileNotFoundError:
            return

    def finish(self) -> None:
        self.done.set()
        self.join(5)
