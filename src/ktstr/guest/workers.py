"""Workers: processes that do one kind of work in a loop and record what happened.

Each worker stamps progress after every unit of work: the clock, the CPU
it ran on.  From the stamps it keeps the longest gaps (when and where),
the CPUs visited and migrations; sleeping kinds also time their wakeups.
At the end it reads its schedstat and writes one JSON result file.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import resource
import signal
import struct
import time
from collections.abc import Callable

from ktstr import wire
from ktstr.guest import ioworkers
from ktstr.guest.quantiles import percentile

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_FUTEX = 202
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
TOP_GAPS = 5
MAX_RESIDENCY = 20000
SPIN_CHUNK = 2000
AMBIGUOUS_CPU_S = 0.01  # a stamp's CPU read took longer: it may predate a move
PROGRESS_STEP_S = 0.1  # progress points at most this often: ~120 for a 12 s run
CDF_POINTS = 50  # wake latency quantiles kept for CDF plots
_TS = struct.Struct("<d")


def getcpu() -> int:
    return _libc.sched_getcpu()


class Stop(Exception):
    """Raised inside the work loop when the worker must stop."""


def _ran_and_switches() -> tuple[float, int, int]:
    """This thread's CPU seconds and the times it left a CPU: to sleep or block
    (voluntarily), and preempted."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime + ru.ru_stime, ru.ru_nvcsw, ru.ru_nivcsw


class Recorder:
    """Progress stamps -> gaps, CPUs, migrations, wake latencies."""

    def __init__(self, t0: float, deadline: float) -> None:
        self.t0, self.deadline = t0, deadline
        self.stopping = False
        self.units = 0
        self.last = time.monotonic()
        self.cpu = getcpu()
        self.cpus: dict[int, int] = {self.cpu: 1}
        self.migrations = 0
        self.residency = [[round(self.last - t0, 6), self.cpu]]
        # [gap_s, at_s (start of gap), cpu, CPU s charged in it, times it slept or blocked
        # in it, times it was preempted in it]: under emulation a task is charged while its
        # vCPU is not run, and time off a CPU split over many preemptions is sharing, not
        # one long wait (see checks/not_stuck.py)
        self.gaps: list[list[float]] = []
        self.ran, self.slept, self.preempted = _ran_and_switches()
        self.wakes: list[float] = []
        self.started = self.last
        # [scenario s, units, cpu, CPU time ns]: for plots, for isolation to see where a
        # worker kept running after its allowed CPUs changed (residency only notes moves),
        # and for fairness to compare workers while they share a CPU.  The CPU time is the
        # kernel's own, read through the clock that brings a running task's count up to date.
        self.progress = [[round(self.last - t0, 6), 0, self.cpu, time.thread_time_ns()]]
        self.extra: dict[str, object] = {}  # kind-specific results (I/O counters)

    def stamp(self, n: int = 1) -> None:
        now = time.monotonic()
        cpu = getcpu()
        # Stopped or preempted between the two reads, the CPU may belong to either
        # side of a move: then this stamp does not say where the worker ran.
        where_known = time.monotonic() - now <= AMBIGUOUS_CPU_S
        if not where_known:
            cpu = self.cpu
        gap = now - self.last
        ran, slept, preempted = _ran_and_switches()
        if len(self.gaps) < TOP_GAPS or gap > self.gaps[-1][0]:
            self.gaps.append(
                [
                    gap,
                    self.last - self.t0,
                    cpu,
                    round(ran - self.ran, 6),
                    slept - self.slept,
                    preempted - self.preempted,
                ]
            )
            self.gaps.sort(key=lambda g: -g[0])
            del self.gaps[TOP_GAPS:]
        self.ran, self.slept, self.preempted = ran, slept, preempted
        if cpu != self.cpu:
            self.migrations += 1
            self.cpu = cpu
            if len(self.residency) < MAX_RESIDENCY:
                self.residency.append([round(now - self.t0, 6), cpu])
        self.cpus[cpu] = self.cpus.get(cpu, 0) + 1
        self.units += n
        self.last = now
        if now - self.progress[-1][0] - self.t0 >= PROGRESS_STEP_S:
            self.progress.append(
                [
                    round(now - self.t0, 6),
                    self.units,
                    cpu if where_known else None,
                    time.thread_time_ns(),
                ]
            )
        if self.stopping or now >= self.deadline:
            raise Stop

    def wake(self, latency_s: float) -> None:
        self.wakes.append(latency_s)


def _spin(n: int = SPIN_CHUNK) -> None:
    for _ in range(n):
        pass


def _spin_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _spin(200)


# Each kind: fn(rec, params, group) loops until rec.stamp() raises Stop.


def k_spin(rec: Recorder, p: dict, g: dict) -> None:
    while True:
        _spin()
        rec.stamp()


def k_yield_heavy(rec: Recorder, p: dict, g: dict) -> None:
    while True:
        for _ in range(10):
            os.sched_yield()
        rec.stamp()


def k_mixed(rec: Recorder, p: dict, g: dict) -> None:
    while True:
        _spin_for(p["spin_us"] / 1e6)
        os.sched_yield()
        rec.stamp()


def k_bursty(rec: Recorder, p: dict, g: dict) -> None:
    while True:
        _spin_for(p["burst_ms"] / 1e3)
        want = time.monotonic() + p["sleep_ms"] / 1e3
        time.sleep(p["sleep_ms"] / 1e3)
        rec.wake(time.monotonic() - want)
        rec.stamp()


def _send_ts(fd: int) -> None:
    os.write(fd, _TS.pack(time.monotonic()))


def _recv_ts(fd: int) -> float:
    data = os.read(fd, _TS.size)
    if len(data) < _TS.size:
        raise Stop
    return time.monotonic() - _TS.unpack(data)[0]


def k_pipe_pingpong(rec: Recorder, p: dict, g: dict) -> None:
    rd, wr = g["pipes"][g["rank"]][0], g["pipes"][1 - g["rank"]][1]
    if g["rank"] == 0:
        _send_ts(wr)
    while True:
        rec.wake(_recv_ts(rd))
        _spin(200)
        _send_ts(wr)
        rec.stamp()


def _futex(addr: int, op: int, val: int) -> None:
    timeout = (ctypes.c_long * 2)(0, 50_000_000)  # 50 ms: a partner that left cannot wedge us
    _libc.syscall(_SYS_FUTEX, ctypes.c_void_p(addr), op, val, timeout, None, 0)


def k_futex_pingpong(rec: Recorder, p: dict, g: dict) -> None:
    shm: mmap.mmap = g["shm"]
    turn = ctypes.c_int.from_buffer(shm, 0)
    stamp = ctypes.c_double.from_buffer(shm, 8)
    addr = ctypes.addressof(turn)
    me = g["rank"]
    while True:
        while turn.value != me:
            _futex(addr, _FUTEX_WAIT, 1 - me)
            if rec.stopping or time.monotonic() >= rec.deadline:
                raise Stop
        if stamp.value:
            rec.wake(time.monotonic() - stamp.value)
        _spin(200)
        stamp.value = time.monotonic()
        turn.value = 1 - me
        _futex(addr, _FUTEX_WAKE, 1)
        rec.stamp()


def k_fan_out(rec: Recorder, p: dict, g: dict) -> None:
    if g["rank"] == 0:
        while True:
            for _, wr in g["pipes"][1:]:
                _send_ts(wr)
            time.sleep(0.002)
            rec.stamp()
    rd = g["pipes"][g["rank"]][0]
    while True:
        rec.wake(_recv_ts(rd))
        _spin(500)
        rec.stamp()


def k_cache_pressure(rec: Recorder, p: dict, g: dict) -> None:
    buf = bytearray(p["kb"] * 1024)
    stride = p["stride"]
    zeros = bytes(len(buf[0::stride]))
    ones = bytes([1]) * len(zeros)
    while True:
        buf[0::stride] = ones
        buf[0::stride] = zeros
        rec.stamp()


def k_fork_exit(rec: Recorder, p: dict, g: dict) -> None:
    while True:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        rec.stamp()


def k_nice_sweep(rec: Recorder, p: dict, g: dict) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    step = 0
    while True:
        os.setpriority(os.PRIO_PROCESS, 0, min(19, base + step % 20))
        _spin()
        step += 1
        rec.stamp()


def k_affinity_churn(rec: Recorder, p: dict, g: dict) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    state = os.getpid()
    while True:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF  # an LCG: no `random` import
        os.sched_setaffinity(0, {allowed[state % len(allowed)]})
        _spin()
        rec.stamp()


def k_policy_churn(rec: Recorder, p: dict, g: dict) -> None:
    policies = [os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_OTHER, os.SCHED_IDLE]
    param = os.sched_param(0)
    step = 0
    while True:
        os.sched_setscheduler(0, policies[step % len(policies)], param)
        _spin()
        step += 1
        rec.stamp()


def k_page_fault_churn(rec: Recorder, p: dict, g: dict) -> None:
    size = p["kb"] * 1024
    page = mmap.PAGESIZE
    while True:
        region = mmap.mmap(-1, size)
        for offset in range(0, size, page):
            region[offset] = 1
        region.close()
        rec.stamp()


def k_mutex_contention(rec: Recorder, p: dict, g: dict) -> None:
    fd = os.open(g["lock_path"], os.O_RDWR | os.O_CREAT, 0o600)
    while True:
        want = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_EX)
        rec.wake(time.monotonic() - want)
        _spin(300)
        fcntl.flock(fd, fcntl.LOCK_UN)
        rec.stamp()


def k_io_sync(rec: Recorder, p: dict, g: dict) -> None:
    path = os.path.join(p["path"], f"ktstr-io-{os.getpid()}")
    data = b"k" * (p["kb"] * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.fsync(fd)
            rec.stamp()
    finally:
        os.close(fd)
        os.unlink(path)


def k_sequence(rec: Recorder, p: dict, g: dict) -> None:
    phases = p["phases"]
    span = max(0.05, (rec.deadline - time.monotonic()) / len(phases))
    final = rec.deadline
    for index, phase in enumerate(phases):
        rec.deadline = final if index == len(phases) - 1 else time.monotonic() + span
        try:
            KINDS[phase["kind"]](rec, phase["params"], g)
        except Stop:
            if rec.stopping or index == len(phases) - 1:
                raise
    raise Stop


KINDS = {name[2:]: fn for name, fn in list(globals().items()) if name.startswith("k_")}
KINDS.update(ioworkers.KINDS)


def _schedstat() -> dict[str, int]:
    try:
        with open("/proc/self/schedstat") as f:
            run_ns, wait_ns, slices = (int(x) for x in f.read().split()[:3])
    except (OSError, ValueError):
        return {}
    return {"cpu_time_ns": run_ns, "wait_ns": wait_ns, "timeslices": slices}


_POLICIES = {
    os.SCHED_OTHER: "normal",
    os.SCHED_BATCH: "batch",
    os.SCHED_IDLE: "idle",
    os.SCHED_FIFO: "fifo",
    os.SCHED_RR: "rr",
}
_POLICIES.update({7: "ext", 6: "deadline"})


def on_ext() -> bool | None:
    """Whether this task is in the sched_ext class now (``ext.enabled`` of
    /proc/thread-self/sched); None where the kernel does not say."""
    try:
        with open("/proc/thread-self/sched") as f:
            for line in f:
                if line.startswith("ext.enabled"):
                    return line.rpartition(":")[2].strip() == "1"
    except OSError:
        pass
    return None


def _sched_class() -> dict[str, object]:
    """The policy, priority and nice the worker starts with: proof the spawn applied them,
    and whether the scheduler under test took it (the sched_ext class)."""
    policy = os.sched_getscheduler(0)
    return {
        "policy": _POLICIES.get(policy, str(policy)),
        "rt_priority": os.sched_getparam(0).sched_priority,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "ext_at_start": on_ext(),
    }


def _cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            return f.read().strip().rpartition(":")[2]
    except OSError:
        return "?"


def result(wid: int, kind: str, rec: Recorder, error: str | None) -> dict:
    wakes = sorted(rec.wakes)
    return {
        "id": wid,
        "work": kind,
        "pid": os.getpid(),
        "units": rec.units,
        "start_s": round(rec.started - rec.t0, 6),
        "end_s": round(rec.last - rec.t0, 6),
        "gaps": [[round(g[0], 6), round(g[1], 6), *g[2:]] for g in rec.gaps],
        "cpus": {str(c): n for c, n in sorted(rec.cpus.items())},
        "migrations": rec.migrations,
        "residency": rec.residency,
        "progress": rec.progress,
        "wake": {
            "n": len(wakes),
            "p50_us": round(percentile(wakes, 0.5) * 1e6, 1),
            "p99_us": round(percentile(wakes, 0.99) * 1e6, 1),
            "max_us": round(wakes[-1] * 1e6, 1),
            "cdf_us": [
                round(percentile(wakes, i / (CDF_POINTS - 1)) * 1e6, 1) for i in range(CDF_POINTS)
            ],
        }
        if wakes
        else None,
        "cgroup": _cgroup(),
        "error": error,
        "ext_at_end": on_ext(),
        **rec.extra,
        **_schedstat(),
    }


def run(
    wid: int,
    work: dict,
    group: dict,
    gate_fd: int,
    t0: float,
    deadline: float,
    result_path: str,
    at_end: Callable[[], dict] | None = None,
) -> None:
    """Worker body, in the forked child: wait at the gate, work, write the result
    (with what ``at_end`` adds: facts only the worker's own task can read)."""
    holder: list[Recorder] = []

    def on_term(signum: int, frame: object) -> None:
        if holder:
            holder[0].stopping = True
        else:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    # The CPU time it had when released (it uses none while it waits at the gate): from
    # release to its first stamp, not_stuck counts only the time it did not run.
    released_cpu_ns = time.thread_time_ns()
    if gate_fd >= 0:
        os.read(gate_fd, 1)  # returns at EOF, when the agent opens the gate
        os.close(gate_fd)
    rec = Recorder(t0, deadline)
    rec.extra.update(_sched_class())
    rec.extra["released_cpu_ns"] = released_cpu_ns
    holder.append(rec)
    error = None
    try:
        KINDS[work["kind"]](rec, work["params"], group)
    except Stop:
        pass
    except Exception as err:  # recorded here, judged on the host
        error = f"{type(err).__name__}: {err}"
    data = result(wid, work["kind"], rec, error)
    try:
        data.update(at_end() if at_end else {})
    except (OSError, ValueError) as err:
        data["facts_error"] = f"{type(err).__name__}: {err}"
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(wire.dumps(data))
    os.rename(tmp, result_path)
