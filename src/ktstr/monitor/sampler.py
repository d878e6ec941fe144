"""Sample a running VM's scheduler state from the host at a fixed period.

A thread that attaches once the guest agent has said hello (the kernel
is up by then), reads every CPU's run queue and sched_ext's global state
each period, and appends one JSON line per sample to
``<run dir>/monitor.jsonl`` as it goes (with the scheduler's user DSQs
and their depths).  It also watches for a developing stall (a runnable
task waiting longer than half the watchdog timeout) and for the
scheduler's error exit, and takes the failure dump (``dump.py``) at the
first of them.  The run never depends on it: any failure (no debug info,
attach refused, a read fault) stops the sampler with one sentence kept
for the record, and the run goes on.

Whether a run is sampled, and how often, is decided in ``settings.py``.
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
from ktstr.monitor import settings

if TYPE_CHECKING:  # drgn is imported only when a sampler runs
    from ktstr.kernel.image import KernelInfo
    from ktstr.monitor.program import Attached
    from ktstr.topology import Topology
    from ktstr.vm.qmp import Monitor

log = logging.getLogger(__name__)

DEFAULT_PERIOD_S = settings.DEFAULT_PERIOD_S
ATTACH_WAIT_S = 600.0  # the longest the sampler waits for the agent's hello
FILE = "monitor.jsonl"
NICE = 10  # the sampler thread's nice value: below QEMU's vCPU threads
MAX_FAILED_READS = 50  # samples in a row that fail to read before the sampler gives up
MAX_SERIES = 6000  # samples kept in the record's series (10 minutes at 0.1 s)
TRACKED_EVENTS = ("SCX_EV_SELECT_CPU_FALLBACK", "SCX_EV_DISPATCH_KEEP_LAST")
ERROR_EXIT = "SCX_EXIT_ERROR"  # exit kinds from SCX_EXIT_ERROR on are failures
EXIT_POLL_S = 0.01  # between samples, how often the scheduler's exit is looked for


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
        debug: Path | None = None,
        enforce: bool = False,
    ) -> None:
        super().__init__(name="ktstr-monitor", daemon=True)
        self.run_dir, self.topology, self.kernel = run_dir, topology, kernel
        self.period_s = period_s
        self.debug = debug
        self.enforce = enforce
        self.qmp: Monitor | None = None
        self.dump: dict[str, Any] | None = None  # what the record says of the failure dump
        self.stall: dict[str, Any] | None = None  # the longest runnable wait seen
        self.series: dict[str, list] = {"t": [], "nr_running": [], "scx_nr_running": [],
                                         "local_dsq": [], "clock": [], "events": [],
                                         "dsqs": []}  # fmt: skip
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
        self.series_truncated = False
        self.watch_error: str | None = None

    def on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("kind") == wire.HELLO:
            self._hello.set()

    def on_qmp(self, monitor: Monitor) -> None:
        """The VM's QMP monitor: the failure dump pauses the VM through it."""
        self.qmp = monitor

    def _pause(self):
        """Stop the VM's vCPUs; returns the function that lets them go on."""
        qmp = self.qmp
        if qmp is None:
            raise RuntimeError("the VM has no QMP monitor")
        qmp.command("stop")

        def resume() -> None:
            # A VM left paused would time out and fail a run the monitor only watched:
            # try again before giving up (QEMU gone is the only way all three fail).
            for attempt in range(3):
                try:
                    qmp.command("cont")
                    return
                except Exception as err:  # noqa: BLE001 - QmpError, or the session ending
                    log.warning("monitor: resuming the VM failed (%s), attempt %d", err,
                                attempt + 1)  # fmt: skip

        return resume

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
        from ktstr.kernel import debuginfo
        from ktstr.monitor import program

        debug = self.debug or debuginfo.find(self.kernel.release, Path(self.kernel.boot_path)).path
        self._hello.wait(ATTACH_WAIT_S)
        if self._halt.is_set():
            return
        pid = qemu_pid(self.run_dir)
        if pid is None:
            self.unavailable = "the VM's QEMU process was gone before the monitor attached"
            return
        attached = program.attach(pid, self.topology, debug, self.kernel.release)
        self.attach_timings = attached.timings
        try:
            self._sample(attached)
        finally:
            attached.close()

    def _sample(self, attached: Attached) -> None:
        import drgn

        from ktstr.monitor import dsq, rq, scx

        prog = attached.prog
        cpus = rq.possible_cpus(prog)
        has_scx = rq.has_scx(prog)
        tick_hz = dsq.hz(prog, getattr(self.kernel, "config_path", None)) if has_scx else None
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
                    wait = (
                        self._guarded_watch(prog, cpus, tick_hz, t0 - started) if has_scx else None
                    )
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
                    for d in dsqs:
                        key = str(d["id"])
                        self.dsq_max[key] = max(self.dsq_max.get(key, 0), d["nr"])
                if wait is not None:
                    line["longest_wait"] = wait
                out.write(json.dumps(line) + "\n")
                out.flush()
                self._account(per_cpu, events, read_s, t0, last)
                self._keep(line)
                last = t0
                # A fixed period from the start: a slow read shortens the next wait.
                next_at = started + (int((time.monotonic() - started) / self.period_s) + 1) * (
                    self.period_s
                )
                self._wait(next_at, prog, cpus, tick_hz, started, has_scx)

    def _wait(
        self,
        next_at: float,
        prog: Any,
        cpus: list[int],
        tick_hz: int | None,
        started: float,
        has_scx: bool,
    ) -> None:
        """Sleep until the next sample.  Under sched_ext, look every ``EXIT_POLL_S`` for the
        scheduler's error exit (one read): the kernel tears the scheduler down, its maps
        and exit record with it, well within a sampling period."""
        import drgn

        while not self._halt.is_set():
            left = next_at - time.monotonic()
            if left <= 0:
                return
            watching = self.dump is None or not self.dump["has_exit"]
            if not has_scx or self.watch_error is not None or not watching:
                self._halt.wait(left)
                return
            self._halt.wait(min(left, EXIT_POLL_S))
            try:
                self._on_exit(prog, cpus, tick_hz, time.monotonic() - started)
            except (drgn.FaultError, LookupError, ValueError):
                continue  # a racing read: look again
            except Exception as err:  # noqa: BLE001 - never lose the samples over the dump
                self.watch_error = f"the exit watch stopped: {type(err).__name__}: {err}"
                log.warning("monitor: %s", self.watch_error)

    def _guarded_watch(
        self, prog: Any, cpus: list[int], tick_hz: int | None, at_s: float
    ) -> dict[str, Any] | None:
        """``_watch``, where a host bug ends only the watching: sampling goes on."""
        import drgn

        if self.watch_error is not None:
            return None
        try:
            return self._watch(prog, cpus, tick_hz, at_s)
        except (drgn.FaultError, LookupError, ValueError):
            raise  # a racing read: the sample is skipped and counted
        except Exception as err:  # noqa: BLE001 - never lose the samples over the dump
            self.watch_error = f"the stall watch stopped: {type(err).__name__}: {err}"
            log.warning("monitor: %s", self.watch_error)
            return None

    def _watch(
        self, prog: Any, cpus: list[int], tick_hz: int | None, at_s: float
    ) -> dict[str, Any] | None:
        """The longest runnable wait now; takes the failure dump when a stall is developing
        or the scheduler exits with an error (once per run)."""
        from ktstr.monitor import dsq, scx

        oldest = dsq.oldest_wait(prog, cpus)
        wait = None
        timeout = scx.watchdog_timeout(prog)
        if oldest is not None:
            waited, cpu, comm, pid = oldest
            wait = {"cpu": cpu, "pid": pid, "comm": comm, "jiffies": waited}
            if tick_hz:
                wait["ms"] = round(waited * 1000 / tick_hz, 1)
            if self.stall is None or waited > self.stall["jiffies"]:
                self.stall = {**wait, "at_s": round(at_s, 3)}
        kind = scx.exit_kind(prog)
        if kind and kind.startswith(ERROR_EXIT):
            self._on_exit(prog, cpus, tick_hz, at_s, kind)
        elif wait and timeout and 2 * wait["jiffies"] > timeout and self.dump is None:
            trigger = {
                "reason": "a stall is developing: a runnable task waited longer than half "
                "the watchdog timeout",
                **wait,
                "watchdog_timeout_jiffies": timeout,
            }
            self._take_dump(prog, cpus, tick_hz, trigger, at_s)
        return wait

    def _on_exit(
        self, prog: Any, cpus: list[int], tick_hz: int | None, at_s: float, kind: str | None = None
    ) -> None:
        """When the scheduler exits with an error: the dump, or its exit record added to the
        dump a developing stall already took."""
        from ktstr.monitor import scx

        kind = kind or scx.exit_kind(prog)
        if not kind or not kind.startswith(ERROR_EXIT):
            return
        if self.dump is None:
            self._take_dump(prog, cpus, tick_hz, {"reason": f"the scheduler is exiting ({kind})"},
                            at_s)  # fmt: skip
        elif not self.dump["has_exit"]:
            self._add_exit(prog)

    def _take_dump(
        self,
        prog: Any,
        cpus: list[int],
        tick_hz: int | None,
        trigger: dict[str, Any],
        at_s: float,
    ) -> None:
        from ktstr.monitor import dump

        trigger["at_s"] = round(at_s, 3)
        pause = self._pause if self.qmp is not None else None
        body = dump.take(prog, cpus, tick_hz, trigger, self.run_dir, pause)
        self.dump = {
            "file": dump.FILE,
            "trigger": trigger,
            "took_s": body["took_s"],
            "paused": body["paused"],
            "has_exit": isinstance(body.get("exit"), dict) and "kind" in body["exit"],
        }
        log.info("monitor: failure dump written (%s)", trigger["reason"])

    def _add_exit(self, prog: Any) -> None:
        """A dump taken while a stall developed gets the scheduler's exit record when it
        comes: the reason the kernel gives, and its own debug dump."""
        from ktstr.monitor import dump, scx

        info = scx.exit_info(prog)
        if info is None or self.dump is None:
            return
        path = self.run_dir / dump.FILE
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        body["exit"] = info
        dump.write(self.run_dir, body)
        self.dump["has_exit"] = True

    def _keep(self, line: dict[str, Any]) -> None:
        """The per-sample numbers the monitor checks and the report's plots use."""
        series = self.series
        if len(series["t"]) >= MAX_SERIES:
            self.series_truncated = True
            return
        cpus = line["cpus"]
        series["t"].append(line["t"])
        series["nr_running"].append([c["nr_running"] for c in cpus])
        series["scx_nr_running"].append([c.get("scx_nr_running") for c in cpus])
        series["local_dsq"].append([c.get("local_dsq_nr") for c in cpus])
        series["clock"].append([c.get("clock") for c in cpus])
        events = line.get("events") or {}
        series["events"].append({k: v for k, v in events.items() if k in TRACKED_EVENTS})
        series["dsqs"].append({str(d["id"]): d["nr"] for d in line.get("dsqs") or []})

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
        out: dict[str, Any] = {
            "period_s": self.period_s,
            "samples": self.samples,
            "enforce": self.enforce,
        }
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
        if self.stall is not None:
            out["longest_wait"] = dict(self.stall)
        if self.dump is not None:
            out["dump"] = dict(self.dump)
        if self.watch_error:
            out["watch_error"] = self.watch_error
        if self.samples:
            out["series"] = {k: list(v) for k, v in self.series.items()}
            if self.series_truncated:
                out["series_truncated"] = MAX_SERIES
        return out


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": round(statistics.median(ordered), 4), "p99": round(p99, 4)}


def for_run(
    run_dir: Path, topology: Topology, kernel: KernelInfo, plan: settings.Plan
) -> Sampler | None:
    """A started sampler when the plan has the monitor on, else None."""
    if plan.period_s is None:
        return None
    sampler = Sampler(run_dir, topology, kernel, plan.period_s, plan.debug, plan.enforce)
    sampler.start()
    return sampler


def off_summary(plan: settings.Plan) -> dict[str, Any]:
    """The record's ``monitor`` entry for a run the monitor did not watch: why not."""
    return {"period_s": None, "samples": 0, "enforce": plan.enforce, "unavailable": plan.off}
