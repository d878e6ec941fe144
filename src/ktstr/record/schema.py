"""The RunRecord's shape: what one run leaves behind, as typed JSON.

A record is stored as ``record.json`` and read back by every reader
(checks, reports, comparisons, the store, the gauntlet, the pytest
plugin) through :mod:`ktstr.record.stored`, which validates it and
upgrades older versions.  The types are ``TypedDict`` so a record stays a
plain JSON object on disk and in memory; ``total=False`` because a
skipped run, or a VM that died early, leaves most fields out.

Versions: 1 (the first); 2 adds ``channel`` (what the host refused from
the guest) and ``kernel_allow``.
"""

from __future__ import annotations

from typing import Any, TypedDict

SCHEMA = 2
# The console and the scheduler's own output are kept to their last lines.
MAX_CONSOLE_LINES = 5000


class Calibration(TypedDict, total=False):
    guest_loop_s: float | None  # seconds the fixed CPU loop took in the guest
    host_loop_s: float  # the same loop on the host (best of three)
    dilation: float | None  # guest / host: how much slower the emulated CPU is
    steal_ticks: int  # CPU time the hypervisor took from the guest during the run


class Worker(TypedDict, total=False):
    """One worker's raw facts, as the guest measured them (see docs/scenarios.md)."""

    id: int
    pid: int
    cgroup_path: str
    work: str
    units: float
    start_s: float
    end_s: float
    cpu_time_ns: float
    released_cpu_ns: int  # its CPU time when released (start gate or spawn)
    gaps: list[list[Any]]  # [gap_s, at_s, cpu | None], longest first
    progress: list[list[Any]]  # [at_s, units, cpu | None, cpu_time_ns] (older: 3 items)
    residency: list[list[Any]]  # [at_s, cpu]: each move
    cpus: dict[str, int]  # CPU -> progress stamps seen there
    migrations: int
    wake: dict[str, float]
    io: dict[str, Any]
    error: str
    killed: bool


class Scheduler(TypedDict, total=False):
    name: str  # "eevdf" when no sched_ext scheduler ran
    binary: str | None
    args: list[str]
    profile: str | None
    events: list[dict[str, Any]]  # lifecycle: started, attached, state, exited, ...
    output: list[dict[str, Any]]  # {"line": ...}: its stdout and stderr, last lines
    kmsg: list[dict[str, Any]]  # {"text": ...}: kernel log from its start on
    debug_dump: str  # path of sched-debug-dump.txt, when it printed one


class Channel(TypedDict, total=False):
    """What the host refused from the guest: a corrupted guest must not pass silently."""

    bad_lines: int  # lines that were not messages of this wire schema
    rejected: int  # messages of a known kind whose fields failed validation
    reasons: list[str]  # a bounded sample of why, escaped
    flooded: str | None  # why the host stopped reading, when the guest sent too much


class Emulator(TypedDict, total=False):
    """QEMU's threads on the host over the VM's life (ktstr.vm.host_wait)."""

    run_s: float
    wait_s: float  # runnable but waiting for a host CPU
    wait_share: float  # wait / (run + wait)


class RunRecord(TypedDict, total=False):
    schema: int
    ktstr_version: str
    created: str
    scenario: str
    description: str
    topology: str
    skipped: str  # the scenario cannot run on this topology: nothing else is recorded
    duration_s: float
    plan: dict[str, Any]  # the compiled plan the guest ran (see scenario/plan.py)
    observed_topology: dict[str, Any]
    kernel: dict[str, Any]
    qemu_version: str | None
    accel: dict[str, str]
    host: str
    git: dict[str, Any] | None
    calibration: Calibration
    workers: list[Worker]
    events: list[dict[str, Any]]  # every op applied, at scenario time at_s
    timeline: list[dict[str, Any]]  # per-CPU samples every 0.25 s
    sched_ext: dict[str, Any]
    console: list[str]  # the kernel console's last lines
    vm_end: str  # how the VM ended (ktstr.vm.lifecycle)
    timings_s: dict[str, float]
    thresholds: dict[str, float]  # the scenario's own threshold overrides
    checks_enabled: dict[str, bool]
    kernel_allow: list[str]  # console lines matching these regexes are not alarming
    disks: list[dict[str, Any]]
    scheduler: Scheduler
    channel: Channel
    emulator: Emulator  # how long QEMU waited for a host CPU: a busy host stretches timings
    workload_skipped: str  # the guest never ran the workload, and why
    monitor: dict[str, Any]  # the host-side monitor's summary, or why it is off (docs/monitor.md)
    payloads: list[dict[str, Any]]  # each payload run: how it ended, its metrics (docs/payloads.md)
    include_files: list[str]  # the guest paths of the files packed under /include-files
    verdict: str
    findings: list[dict[str, Any]]
