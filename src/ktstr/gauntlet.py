"""``ktstr gauntlet``: scenarios × topology presets × flag profiles, one VM each.

Variants run as parallel VMs within a CPU and a memory budget; every
record is written as soon as its variant ends, Ctrl-C stops every VM and
keeps what finished, and a summary matrix follows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ktstr.disk import Disk, check_shareable
from ktstr.errors import ConfigError
from ktstr.host import mem_available_mib, memory_problem
from ktstr.monitor import settings as monitor_settings
from ktstr.monitor.settings import MonitorSettings
from ktstr.presets import DEFAULT_MAX_CPUS, Variant, select, shard
from ktstr.runner import run_scenario
from ktstr.scheduler import Scheduler
from ktstr.topology import Topology
from ktstr.userfile import scenario as get
from ktstr.vm import lifecycle
from ktstr.vm.qemu import choose_qemu, tcg_thread_mode

if TYPE_CHECKING:
    from ktstr.distributed.executor import DaskExecutor

SYMBOL = {"pass": "pass", "fail": "FAIL", "skip": "skip", "inconclusive": "inc?"}


@dataclass
class Cell:
    scenario: str
    variant: Variant
    verdict: str
    run_dir: str
    summary: str | None


@dataclass
class Plan:
    """What a gauntlet will run, and what it leaves out and why (printed before boot)."""

    cells: list[tuple[str, Variant]]
    left_out: list[str]  # one line each: "<preset or scenario[variant]>: <reason>"
    capped: list[str]  # presets above the default selection's vCPU cap
    cap: int

    def refusal(self) -> ConfigError | None:
        """One sentence when every selected cell was left out (before any sharding)."""
        if self.cells:
            return None
        if not self.left_out:
            return ConfigError("nothing to run: no preset selected", "name presets with --presets")
        more = len(self.left_out) - 1
        why = self.left_out[0] + (f" (and {more} more, listed above)" if more else "")
        fix = "choose other presets (ktstr topo presets) or scenarios"
        if any("guest RAM" in line for line in self.left_out):
            fix += ", or free memory"
        return ConfigError(f"nothing left to run: {why}", fix)


def prepare(
    scenarios: list[str],
    scheduler: Scheduler,
    presets: list[str] | None,
    profiles: list[str] | None,
    max_cpus: int = DEFAULT_MAX_CPUS,
    shard_of: tuple[int, int] | None = None,
    all_presets: bool = False,
    available_mib: int | None = None,
    raise_if_empty: bool = True,
) -> Plan:
    """Every (scenario, variant) to run, in a deterministic order, and what is left out.

    ``presets`` named explicitly run whatever their size; ``max_cpus`` caps only
    the default selection, and ``all_presets`` lifts the cap.  A preset whose
    guest RAM exceeds ``available_mib`` (default: the host's available memory),
    and a scenario that cannot run on a preset (its ``requires``), are left out
    with the reason.  Raises ConfigError when nothing at all is left to run
    (unless ``raise_if_empty`` is False: then see ``Plan.refusal``).
    """
    for name in scenarios:
        get(name)  # unknown names fail before anything boots
    if scheduler.is_eevdf:
        chosen = None
    else:
        chosen = profiles or [p.name for p in scheduler.profiles()]
        for p in chosen:
            scheduler.profile(p)
    available = mem_available_mib() if available_mib is None else available_mib
    selection = select(
        lambda t: memory_problem(t, available), chosen, presets, all_presets, max_cpus
    )
    left_out = [f"{name}: {reason}" for name, reason in selection.left_out]
    cells = []
    for scenario in scenarios:
        requires = get(scenario).requires
        for v in selection.variants:
            reason = requires.reason(Topology.parse(v.topology).layout())
            if reason is None:
                cells.append((scenario, v))
            elif v.profile is None or v.profile == chosen[0]:  # once per preset
                left_out.append(f"{scenario}[{v.preset}]: the scenario {reason}")
    planned = Plan(cells, left_out, selection.capped, max_cpus)
    if raise_if_empty and (problem := planned.refusal()):
        raise problem
    if shard_of:
        keep = set(shard(selection.variants, *shard_of))
        planned.cells = [(s, v) for s, v in cells if v in keep]
    return planned


def plan(
    scenarios: list[str],
    scheduler: Scheduler,
    presets: list[str] | None,
    profiles: list[str] | None,
    max_cpus: int = DEFAULT_MAX_CPUS,
    shard_of: tuple[int, int] | None = None,
    all_presets: bool = False,
) -> list[tuple[str, Variant]]:
    """The cells of :func:`prepare`."""
    return prepare(scenarios, scheduler, presets, profiles, max_cpus, shard_of, all_presets).cells


@dataclass(frozen=True)
class Budget:
    """How much of the host the VMs may take at once."""

    jobs: int  # VMs at once, at most
    cpus: int  # host threads the VMs may keep busy
    memory_mib: int  # guest RAM, summed


def default_budget(jobs: int | None = None, memory_mib: int | None = None) -> Budget:
    cpus = os.cpu_count() or 1
    return Budget(jobs or cpus, cpus, memory_mib or int((mem_available_mib() or 4096) * 0.8))


def vm_threads(topology: Topology, accel: str) -> int:
    """Host threads a VM keeps busy: one under single-threaded TCG, else one per vCPU."""
    if accel == "tcg" and tcg_thread_mode() == "single":
        return 1
    return topology.cpus


def run(
    cells: list[tuple[str, Variant]],
    scheduler: Scheduler,
    duration_s: float | None,
    kernel: str | None,
    accel: str | None,
    on_done: Callable[[Cell, int, int], None],
    budget: Budget | None = None,
    on_start: Callable[[str, Variant], None] | None = None,
    disks: tuple[Disk, ...] | None = None,
    executor: DaskExecutor | None = None,
    include: tuple[str, ...] = (),
    monitor: MonitorSettings | None = None,
) -> list[Cell]:
    """Run every cell, as many at once as the budget allows; results in cell order.

    ``executor`` None runs them on this host's pool; a DaskExecutor on a Dask cluster.

    ``disks`` replaces each scenario's own disks (the CLI's ``--disk``);
    ``include`` adds host files to each (``--include``).
    """
    if executor is not None:  # Dask: each worker's host guards its own CPUs and memory
        from ktstr.distributed.executor import run as run_dask

        if monitor is not None and monitor != MonitorSettings():
            raise ConfigError(
                "the monitor options are not shipped to Dask workers yet",
                "run without --monitor-period and --monitor-enforce, or without --dask",
            )
        return run_dask(
            cells, scheduler, duration_s, kernel, accel, on_done, executor, on_start, disks, include
        )
    from ktstr.initramfs.image import base_image
    from ktstr.kernel.store import resolve
    from ktstr.results.terminal import bug_summary
    from ktstr.vm.accel import choose

    budget = budget or default_budget()
    vm_disks = [get(name).disks if disks is None else disks for name, _ in cells]
    check_shareable(vm_disks, min(budget.jobs, len(cells)))
    accel_name = choose(accel, resolve(kernel).boot_path).name
    # A preset this host's QEMU cannot run is refused before any VM boots.
    tcg_mode = tcg_thread_mode() if accel_name == "tcg" else None
    for topology in {Topology.parse(v.topology) for _, v in cells}:
        choose_qemu(topology, tcg_mode)
    base_image()  # build the shared guest image once, before VMs race for it
    # Decided once: an explicit period fetches missing debug info here, not in every VM.
    monitored = monitor_settings.resolve(monitor, resolve(kernel)).period_s is not None
    monitor_mib = monitor_settings.HOST_MIB if monitored else 0

    def one(scenario: str, variant: Variant) -> Cell:
        record, run_dir = run_scenario(
            get(scenario),
            Topology.parse(variant.topology),
            kernel,
            accel,
            duration_s,
            scheduler=scheduler,
            profile=variant.profile,
            disks=disks,
            include=include,
            monitor=monitor,
        )
        return Cell(scenario, variant, record["verdict"], str(run_dir), bug_summary(record))

    pending = list(enumerate(cells))
    running: dict[Future, tuple[int, int, int]] = {}  # future -> (index, threads, MiB)
    results: dict[int, Cell] = {}
    lifecycle.ABORT.clear()
    with ThreadPoolExecutor(max_workers=max(1, budget.jobs)) as pool:
        try:
            while pending or running:
                while pending and len(running) < budget.jobs:
                    index, (scenario, variant) = pending[0]
                    topo = Topology.parse(variant.topology)
                    threads, mib = vm_threads(topo, accel_name), topo.memory + monitor_mib
                    busy = sum(t for _, t, _ in running.values())
                    used = sum(m for _, _, m in running.values())
                    if running and (busy + threads > budget.cpus or used + mib > budget.memory_mib):
                        break  # wait for room; a lone VM always runs
                    pending.pop(0)
                    running[pool.submit(one, scenario, variant)] = (index, threads, mib)
                    if on_start:
                        on_start(scenario, variant)
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    index, _, _ = running.pop(future)
                    results[index] = future.result()
                    on_done(results[index], len(results), len(cells))
        except KeyboardInterrupt:
            lifecycle.ABORT.set()  # every running VM is killed; finished records stay
            wait(list(running))
            raise
    return [results[i] for i in sorted(results)]


def matrix(cells: list[Cell]) -> str:
    """Scenario rows × variant columns, each cell pass/FAIL/skip."""
    columns = list(dict.fromkeys(c.variant.id for c in cells))
    rows = list(dict.fromkeys(c.scenario for c in cells))
    by = {(c.scenario, c.variant.id): c.verdict for c in cells}
    width = max([len(r) for r in rows] + [8])
    head = " ".join(col.rjust(max(len(col), 4)) for col in columns)
    lines = [f"{'scenario'.ljust(width)} {head}"]
    for r in rows:
        cells_text = " ".join(
            SYMBOL.get(by.get((r, col), ""), "-").rjust(max(len(col), 4)) for col in columns
        )
        lines.append(f"{r.ljust(width)} {cells_text}")
    return "\n".join(lines)
