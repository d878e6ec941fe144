"""Sample a running VM's scheduler state from the host at a fixed period.

A thread that attaches once the guest agent has said hello (the kernel
is up by then), reads every CPU's run queue and sched_ext's global state
each period, and appends one JSON line per sample to
``<run dir>/monitor.jsonl`` as it goes (with the scheduler's user DSQs
and their depths).  The run never depends on it:
any failure (no debug info, attach refused, a read fault) stops the
sampler with one sentence kept for the record, and the run goes on.

Opt-in for now: ``KTSTR_MONITOR=<period in seconds>`` (e.g. ``0.1``)
turns it on for scenario runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktstr import wire
from ktstr.errors import KtstrError
from ktstr.kernel import debuginfo

if TYPE_CHECKING:  # drgn is imported only when a sampler runs
    from ktstr.kernel.image import KernelInfo
    from ktstr.monitor.program import Attached
    from ktstr.topology import Topology

log = logging.getLogger(__name__)

ENV = "KTSTR_MONITOR"
DEFAULT_PERIOD_S = 0.1
ATTACH_WAIT_S = 600.0  # the longest the sampler waits for the agent's hello
FILE = "monitor.jsonl"
NICE = 10  # the sampler thread's nice value: below QEMU's vCPU threads
MAX_FAILED_READS = 50  # samples in a row that fail to read before the sampler gives up


def period_from_env() -> float | None:
    """The sampling period ``KTSTR_MONITOR`` asks for, None when the monitor is off."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("", "0", "off", "no"):
        return None
    if raw in ("1", "on", "yes"):
        return DEFAULT_PERIOD_S
    try:
        period = float(raw)
    except ValueError:
        period = 0.0
    if not 0.01 <= period <= 60:
        log.warning("%s=%r is not a period in seconds (0.01-60); using %s s", ENV, raw,
                    DEFAULT_PERIOD_S)  # fmt: skip
        return DEFAULT_PERIOD_S
    return period


def qemu_pid(run_dir: Path, parent: int | None = None) -> int | None:
    """The QEMU process running this run's VM: a child of ``parent`` (this process by
    default) whose argv names a file in ``run_dir``.

    Both conditions: another ktstr, in another directory, may have a run
    directory of the same relative name, and ``runs/x`` is a prefix of ``runs/x-1``.
    """
    parent = os.getpid() if parent is None else parent
    prefix = str(run_dir).encode() + b"/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid != parent or not argv or not argv[0].endswith(b"qemu-system-x86_64"):
            continue
        if any(a.startswith(prefix) for a in argv):
            return int(proc.name)
    return None


class Sampler(threading.Thread):
    """The monitor for one run: ``on_message`` goes to the VM's channel, ``stop`` after it."""

    def __init__(
        self,
        run_dir: Path,
        topology: Topology,
        kernel: KernelInfo,
        period_s: float = DEFAULT_PERIOD_S,
    ) -> None:
        super().__init__(name="ktstr-monitor", daemon=True)
        self.run_dir, self.topology, self.kernel = run_dir, topology, kernel
        self.period_s = period_s
        self._hello = threading.Event()
        self._halt = threading.Event()
        self.unavailable: str | None = None
        self.attach_timings: dict[str, float] = {}
        self.samples = 0
        self.read_errors = 0
        self.read_s: list[float] = []
        self.intervals: list[float] = []
        self.per_cpu: dict[int, dict[str, Any]] = {}
        self.events_last: dict[str, int] | None = None
        self.dsq_max: dict[str, int] = {}  # user DSQ id -> deepest seen

    def on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("kind") == wire.HELLO:
            self._hello.set()

    def stop(self) -> None:
        """End sampling (the VM is gone or going) and wait for the thread."""
        self._halt.set()
        self._hello.set()
        if self.is_alive():
            self.join(30)

    def run(self) -> None:
        # The attach takes 1-2 s of host CPU (drgn indexes the DWARF, on worker threads
        # that inherit this thread's nice value), just as the guest starts its workers:
        # the guest's vCPUs go first on a host with few cores.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        try:
            self._run()
        except KtstrError as err:
            self.unavailable = str(err)
        except Exception as err:  # a monitor failure never fails the run
            self.unavailable = f"the monitor stopped: {type(err).__name__}: {err}"
        if self.unavailable:
            log.warning("monitor: %s", self.unavailable)

    def _run(self) -> None:
        from ktstr.monitor import program

        debug = debuginfo.find(self.kernel.release, Path(self.kernel.boot_path))
        self._hello.wait(ATTACH_WAIT_S)
        if self._halt.is_set():
            return
        pid = qemu_pid(self.run_dir)
        if pid is None:
            self.unavailable = "the VM's QEMU process was gone before the monitor attached"
            return
        attached = program.attach(pid, self.topology, debug.path, self.kernel.release)
        self.attach_timings = attached.timings
        try:
            self._sample(attached)
        finally:
            attached.close()

    def _sample(self, attached: Attached) -> None:
        import drgn

        from ktstr.monitor import rq, scx

        prog = attached.prog
        cpus = rq.possible_cpus(prog)
        has_scx = rq.has_scx(prog)
        started = time.monotonic()
        last = None
        failed = 0
        with open(self.run_dir / FILE, "a") as out:
            while not self._halt.is_set():
                t0 = time.monotonic()
                try:
                    per_cpu = rq.sample_all(prog, cpus, has_scx)
                    state = scx.state(prog) if has_scx else {}
                    events = scx.events(prog) if has_scx else None
                    dsqs = scx.user_dsqs(prog) if has_scx else None
                    failed = 0
                except (drgn.FaultError, LookupError, ValueError) as err:
                    # The guest changes what the host reads (a task exits, a scheduler
                    # detaches mid-read): skip the sample; give up only on a run of them.
                    self.read_errors += 1
                    failed += 1
                    if failed >= MAX_FAILED_READS:
                        raise RuntimeError(f"{failed} samples in a row failed ({err})") from None
                    self._halt.wait(self.period_s)
                    continue
                read_s = time.monotonic() - t0
                line = {"t": round(t0 - started, 4), "cpus": per_cpu, "scx": state}
                if events is not None:
                    line["events"] = events
                if dsqs is not None:
                    line["dsqs"] = dsqs
                    for dsq in dsqs:
                        key = str(dsq["id"])
                        self.dsq_max[key] = max(self.dsq_max.get(key, 0), dsq["nr"])
                out.write(json.dumps(line) + "\n")
                out.flush()
                self._account(per_cpu, events, read_s, t0, last)
                last = t0
                # A fixed period from the start: a slow read shortens the next wait.
                next_at = started + (int((time.monotonic() - started) / self.period_s) + 1) * (
                    self.period_s
                )
                self._halt.wait(max(0.0, next_at - time.monotonic()))

    def _account(
        self,
        per_cpu: list[dict[str, Any]],
        events: dict[str, int] | None,
        read_s: float,
        t0: float,
        last: float | None,
    ) -> None:
        self.samples += 1
        self.read_s.append(read_s)
        if last is not None:
            self.intervals.append(t0 - last)
        for s in per_cpu:
            agg = self.per_cpu.setdefault(
                s["cpu"], {"nr_running_max": 0, "nr_running_sum": 0, "local_dsq_max": 0}
            )
            agg["nr_running_max"] = max(agg["nr_running_max"], s["nr_running"])
            agg["nr_running_sum"] += s["nr_running"]
            agg["local_dsq_max"] = max(agg["local_dsq_max"], s.get("local_dsq_nr", 0))
        if events is not None:
            self.events_last = events

    def summary(self) -> dict[str, Any]:
        """What the record keeps: the period asked and achieved, per-CPU aggregates, and the
        scheduler's event counters as last read (or why there is nothing)."""
        out: dict[str, Any] = {"period_s": self.period_s, "samples": self.samples}
        if self.unavailable:  # why there are no samples, or why they end early
            out["unavailable" if not self.samples else "stopped"] = self.unavailable
        if self.read_errors:
            out["read_errors"] = self.read_errors
        if self.attach_timings:
            out["attach_s"] = self.attach_timings.get("total_s")
        if self.read_s:
            out["read_s"] = _spread(self.read_s)
        if self.intervals:
            out["interval_s"] = _spread(self.intervals)
        out["per_cpu"] = {
            str(cpu): {
                "nr_running_max": agg["nr_running_max"],
                "nr_running_mean": round(agg["nr_running_sum"] / self.samples, 3),
                "local_dsq_max": agg["local_dsq_max"],
            }
            for cpu, agg in sorted(self.per_cpu.items())
        }
        if self.dsq_max:
            out["dsq_max"] = dict(self.dsq_max)
        if self.events_last is not None:
            # The counters belong to the attached scheduler and start at zero with it:
            # the last values read are its totals up to then.
            out["events"] = dict(self.events_last)
        return out


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": round(statistics.median(ordered), 4), "p99": round(p99, 4)}


def for_run(run_dir: Path, topology: Topology, kernel: KernelInfo) -> Sampler | None:
    """A started sampler when ``KTSTR_MONITOR`` asks for one, else None."""
    period = period_from_env()
    if period is None:
        return None
    sampler = Sampler(run_dir, topology, kernel, period)
    sampler.start()
    return sampler
