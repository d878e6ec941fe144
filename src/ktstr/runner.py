"""One scenario, end to end: compile, boot, collect, judge -> a RunRecord on disk.

Orchestration only: the plan is compiled in ``scenario/``, the VM owned by
``vm/``, the record built in ``record/`` and judged in ``checks/``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from ktstr import paths, wire
from ktstr.budget import record_cost
from ktstr.checks import judge
from ktstr.disk import Disk
from ktstr.errors import ConfigError, KernelError
from ktstr.fixture_sched import NAME as FIXTURE
from ktstr.initramfs import elfdeps
from ktstr.initramfs.include import archive as include_archive
from ktstr.initramfs.include import pack as pack_includes
from ktstr.kernel.image import KernelInfo
from ktstr.kernel.store import resolve
from ktstr.monitor import sampler
from ktstr.monitor import settings as monitor_settings
from ktstr.payloads.pack import archive as pack_payloads
from ktstr.record import RunRecord, builder, stored
from ktstr.results import store
from ktstr.scenario.model import Scenario
from ktstr.scenario.plan import compile_plan
from ktstr.scheduler import EEVDF, Scheduler
from ktstr.topology import Topology
from ktstr.verifier import shim
from ktstr.vm import accel as accel_mod
from ktstr.vm import lifecycle
from ktstr.vm.boot import boot, check_end, default_timeout

log = logging.getLogger(__name__)

GUEST_SCHED_DIR = "/ktstr/sched/bin"
ATTACH_TIMEOUT_S = 30.0


def pack_scheduler(
    scheduler: Scheduler, args: tuple[str, ...], release: str
) -> tuple[dict, dict[str, bytes]]:
    """The plan's scheduler entry and the files (binary + shared libraries) to pack."""
    binary = scheduler.resolve_binary(release)
    guest_path = f"{GUEST_SCHED_DIR}/{binary.name}"
    files = {guest_path: binary.read_bytes()}
    libs = elfdeps.closure([binary])
    for guest_lib, host_lib in libs.items():
        files[guest_lib] = Path(host_lib).read_bytes()
    spec = {
        "name": scheduler.name,
        "path": guest_path,
        "args": list(args),
        "ops": scheduler.expected_ops,
        "sysctls": dict(scheduler.sysctls),
        "attach_timeout_s": ATTACH_TIMEOUT_S,
        "ld_library_path": ":".join(sorted({str(Path(p).parent) for p in libs})),
        "host_binary": str(binary),
    }
    return spec, files


def _plan_ops(plan: dict) -> list[dict]:
    return [op for step in plan["steps"] for rnd in [step, *step["repeats"]] for op in rnd["ops"]]


def check_plan_needs(plan: dict, scheduler: Scheduler, info: KernelInfo) -> None:
    """Refuse, before booting, a plan the kernel or the scheduler cannot carry out."""
    ops = _plan_ops(plan)
    knobs = [op["line"] for op in ops if op["op"] == "fixture_knob"]
    if knobs and scheduler.name != FIXTURE:
        raise ConfigError(
            f"the scenario sets fixture knobs ({', '.join(knobs)}) but runs under {scheduler.name}",
            f"run it with --scheduler {FIXTURE}",
        )
    ext = [op["path"] for op in ops if op["op"] == "spawn" and op["policy"][0] == "ext"]
    if ext and info.sched_ext is False:
        raise KernelError(
            f"cgroup {ext[0]} asks for SCHED_EXT workers, but kernel {info.release} lacks "
            "CONFIG_SCHED_CLASS_EXT",
            "use a sched_ext kernel ('ktstr kernel fetch')",
        )


def save(record: RunRecord, run_dir: Path) -> Path:
    """Write record.json and index it in the result store."""
    path = stored.save(record, run_dir)
    store.index(record, run_dir)
    return path


def run_scenario(
    scenario: Scenario,
    topology: Topology,
    kernel: str | None = None,
    accel: str | None = None,
    duration_s: float | None = None,
    timeout_s: float | None = None,
    scheduler: Scheduler = EEVDF,
    profile: str | None = None,
    extra_args: tuple[str, ...] = (),
    expect: dict | None = None,
    disks: tuple[Disk, ...] | None = None,
    include: tuple[str, ...] = (),
    monitor: monitor_settings.MonitorSettings | None = None,
    verifier: bool = False,
) -> tuple[RunRecord, Path]:
    """Boot, run, judge; the record is saved in the run directory and returned.

    ``disks`` replaces the scenario's own disks when given; ``include`` adds
    host files to the scenario's ``include_files``; ``monitor`` sets the
    host-side monitor (default: see ``monitor.settings``); ``verifier`` loads the
    scheduler under the verifier statistics library and keeps what it reports in
    ``record["verifier"]`` (``ktstr verifier``).
    """
    duration = float(scenario.duration_s if duration_s is None else duration_s)
    if not math.isfinite(duration) or duration <= 0:
        raise ConfigError(f"duration {duration_s!r} s is not a positive number", "give seconds > 0")
    included = pack_includes([*scenario.include_files, *include, *scheduler.config_files()])
    run_dir = paths.new_run_dir(f"{scenario.name}-{topology.name}")
    reason = scenario.requires.reason(topology.layout())
    if reason:
        record = builder.skipped(scenario, topology, reason)
        builder.with_verdict(record, judge(record))
        save(record, run_dir)
        return record, run_dir
    disks = tuple(scenario.disks if disks is None else disks)
    plan = compile_plan(scenario, topology, duration, disks)
    # A payload program missing on this host is one sentence, before anything boots.
    payload_archive, payload_libs = pack_payloads(plan.get("payloads", []))
    if payload_libs:
        plan["payload_lib_path"] = payload_libs
    info = resolve(kernel)
    files: dict[str, bytes] = {}
    if not scheduler.is_eevdf:
        if info.sched_ext is False:
            raise KernelError(
                f"kernel {info.release} lacks CONFIG_SCHED_CLASS_EXT, so {scheduler.name} "
                "cannot run on it",
                "use a sched_ext kernel ('ktstr kernel fetch')",
            )
        chosen_profile = scheduler.profile(profile)
        plan["profile"] = chosen_profile.name
        plan["scheduler"], files = pack_scheduler(
            scheduler,
            chosen_profile.args + tuple(extra_args) + scheduler.config_args(),
            info.release,
        )
        if verifier:
            shim.attach(plan["scheduler"], files)
    check_plan_needs(plan, scheduler, info)
    plan["expect"] = expect or {}
    chosen = accel_mod.choose(accel, info.boot_path)
    log.info("%s", chosen.line())
    timeout = timeout_s or (
        default_timeout(topology, chosen)
        + 2 * duration
        + 30
        + plan["stop_grace_s"]
        + plan.get("exit_patience_s", 0.0)
    )
    started = time.monotonic()
    monitor_plan = monitor_settings.resolve(monitor, info)
    sampling = sampler.for_run(run_dir, topology, info, monitor_plan)
    try:
        done = boot(
            topology,
            info,
            chosen,
            run_dir,
            plan,
            timeout,
            strict=False,
            on_message=sampling.on_message if sampling else None,
            files=files,
            cmdline=list(scheduler.kernel_args),
            disks=disks,
            on_qmp=sampling.on_qmp if sampling else None,
            archives=[a for a in (payload_archive, include_archive(included)) if a],
        )
    finally:
        if sampling:
            sampling.stop()
    result = done.result
    # QEMU that never ran, or an agent that failed, leave nothing to judge: one sentence.
    # A panic or a flood is judged: the record says what happened before it.
    agent_failed = result.first(wire.ERROR) and result.end not in (
        lifecycle.PANIC,
        lifecycle.FLOODED,
    )
    if result.end == lifecycle.QEMU_FAILED or agent_failed:
        check_end(result)
    record_cost(topology.cpus, duration, time.monotonic() - started)
    record = builder.build(scenario, topology, plan, result, info, chosen, duration, done.disks)
    if included:
        record["include_files"] = sorted(included)
    summary = sampling.summary() if sampling else sampler.off_summary(monitor_plan)
    record["monitor"] = summary  # type: ignore[typeddict-unknown-key]
    if verifier:
        record["verifier"] = result.first(wire.VERIFIER) or {}  # type: ignore[typeddict-unknown-key]
    builder.with_verdict(record, judge(record))
    save(record, run_dir)
    return record, run_dir
