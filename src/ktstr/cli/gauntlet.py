"""``ktstr gauntlet``, and the catalogues it draws from: ``topo presets``, ``scenarios``.

Kept apart from ``runs`` because ``schedulers`` sits between the two groups
in ``ktstr --help``.
"""

from __future__ import annotations

import argparse

from ktstr import paths
from ktstr.cli.common import (
    ACCEL_CHOICES,
    EXIT_FOR_VERDICT,
    disk_option,
    include_option,
    monitor_from_args,
    monitor_options,
    positive,
)
from ktstr.cli.worker import tls_options
from ktstr.presets import DEFAULT_MAX_CPUS
from ktstr.results.terminal import table


def cmd_gauntlet(args: argparse.Namespace) -> int:
    from ktstr import gauntlet, userfile
    from ktstr.initramfs.include import check
    from ktstr.presets import parse_shard
    from ktstr.results.progress import GauntletProgress

    scheduler = userfile.scheduler(args.scheduler)
    for name in args.scenarios or ["steady"]:  # every include exists before anything boots
        check([*userfile.scenario(name).include_files, *args.include, *scheduler.config_files()])
    presets = [p for p in args.presets.split(",") if p] if args.presets else None
    planned = gauntlet.prepare(
        args.scenarios or ["steady"],
        scheduler,
        presets,
        args.profiles.split(",") if args.profiles else None,
        args.max_cpus,
        parse_shard(args.shard) if args.shard else None,
        all_presets=args.all_presets,
        raise_if_empty=False,
    )
    for line in planned.left_out:
        print(f"gauntlet: left out {line}", flush=True)
    if problem := planned.refusal():
        raise problem
    if planned.capped:
        print(
            f"gauntlet: the default selection stops at {planned.cap} vCPUs and leaves out "
            f"{', '.join(planned.capped)}; name them with --presets, or use --all-presets",
            flush=True,
        )
    cells = planned.cells
    if args.budget:
        from ktstr.budget import select

        chosen = select(cells, scheduler.name, args.duration or 12.0, args.budget)
        print(f"budget: {chosen.summary()}", flush=True)
        cells = chosen.cells
    print(f"gauntlet: {len(cells)} variants", flush=True)

    executor = None
    if args.dask:
        from ktstr.distributed.executor import DaskExecutor
        from ktstr.distributed.security import tls_from

        tls = tls_from(
            args.dask, args.dask_tls_ca, args.dask_tls_cert, args.dask_tls_key, "--dask-tls"
        )
        executor = DaskExecutor(args.dask, tls=tls)
        executor.local_workers()  # a malformed local:N fails before anything starts
    budget = gauntlet.default_budget(args.jobs, args.mem_budget)
    if executor is None:
        print(
            f"budget: {budget.jobs} VMs at once, {budget.cpus} host CPUs, "
            f"{budget.memory_mib} MiB of guest RAM",
            flush=True,
        )
    else:  # each worker's host has its own budget
        print(f"gauntlet: on the Dask cluster {args.dask}", flush=True)
    with GauntletProgress(len(cells), budget.jobs) as shown:

        def finished(cell: gauntlet.Cell, index: int, total: int) -> None:
            line = (
                f"[{index}/{total}] {cell.scenario}[{cell.variant.id}]: "
                f"{cell.verdict.upper()} ({cell.run_dir})"
            )
            if cell.summary:
                line += f"\n    {cell.summary}"
            shown.finished_one(cell.verdict, line)

        done = gauntlet.run(
            cells,
            scheduler,
            args.duration,
            args.kernel,
            args.accel,
            finished,
            budget,
            on_start=lambda *_: shown.started_one(),
            disks=tuple(args.disk) or None,
            executor=executor,
            include=tuple(args.include),
            monitor=monitor_from_args(args),
        )
    print()
    print(gauntlet.matrix(done))
    print(f"\nrun directories under {paths.runs_dir()}")
    return max((EXIT_FOR_VERDICT[c.verdict] for c in done), default=0)


def cmd_topo_presets(args: argparse.Namespace) -> int:
    from ktstr.presets import PRESETS, preset

    rows = [("preset", "topology", "cpus", "llcs", "numa", "smt")]
    for name in PRESETS:
        t = preset(name)
        smt = "yes" if t.threads_per_core > 1 else "no"
        rows.append((name, t.name, str(t.cpus), str(t.llcs), str(t.numa_nodes), smt))
    print("\n".join(table(rows)))
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from ktstr.scenario.catalog import CATALOG

    listed = CATALOG
    if args.file:
        from ktstr import userfile
        from ktstr.scenario.model import Scenario

        listed = userfile.declared(userfile.split_ref(args.file)[0], Scenario)
        if not listed:
            print(f"{args.file} declares no Scenario at its top level")
            return 0
    width = max(map(len, listed))
    for name, scenario in listed.items():
        print(f"{name:<{width}}  {scenario.description}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    gaunt = sub.add_parser(
        "gauntlet",
        help="run scenarios across topology presets and flag profiles",
        description="Expand scenarios x presets x profiles, run each variant in its own VM "
        "in parallel within a CPU and memory budget, stream each record to disk, and end "
        "with a matrix. Ctrl-C stops every VM and keeps the finished records.",
    )
    gaunt.add_argument(
        "scenarios",
        nargs="*",
        help="scenario names or path/file.py::NAME (default: steady)",
    )
    gaunt.add_argument(
        "--scheduler", "-s", default=None, help="as for 'ktstr run' (also path/file.py::NAME)"
    )
    which = gaunt.add_mutually_exclusive_group()
    which.add_argument(
        "--presets",
        default=None,
        help="comma-separated preset names; each runs whatever its vCPU count",
    )
    which.add_argument(
        "--all-presets",
        action="store_true",
        help="every preset, including those above --max-cpus (up to 252 vCPUs)",
    )
    gaunt.add_argument("--profiles", default=None, help="comma-separated flag profiles")
    gaunt.add_argument(
        "--max-cpus",
        type=positive("--max-cpus", int, "16"),
        default=DEFAULT_MAX_CPUS,
        help="without --presets or --all-presets, leave out presets with more vCPUs "
        "(default: %(default)s; boot time grows with vCPUs under emulation)",
    )
    gaunt.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N")
    gaunt.add_argument(
        "--budget",
        type=positive("--budget", float, "600"),
        default=None,
        metavar="SECONDS",
        help="run the subset that covers the most configurations (scheduler, profile, CPU/LLC "
        "buckets, SMT, NUMA, scenario) within this many estimated seconds; estimates are "
        "calibrated from this host's runs",
    )
    gaunt.add_argument(
        "-j",
        "--jobs",
        type=positive("-j/--jobs", int, "2"),
        default=None,
        help="VMs at once, at most (default: the host's CPU count)",
    )
    gaunt.add_argument(
        "--mem-budget",
        type=positive("--mem-budget", int, "4096"),
        default=None,
        metavar="MIB",
        help="guest RAM of all running VMs together, plus the host-side monitor's 400 MiB per "
        "VM when it is on (default: 80%% of the host's available memory)",
    )
    gaunt.add_argument("--duration", type=positive("--duration"), default=None, metavar="S")
    disk_option(gaunt)
    include_option(gaunt)
    monitor_options(gaunt)
    gaunt.add_argument("--kernel", "-k", default=None)
    gaunt.add_argument("--accel", choices=ACCEL_CHOICES, default=None)
    gaunt.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local[:N]",
        help="run the variants on a Dask cluster: a scheduler's address (its workers run "
        "'ktstr worker ADDRESS'), or local:N for N workers on this host; needs "
        "ktstr[distributed] (docs/distributed.md)",
    )
    tls_options(gaunt, "--dask-tls")
    gaunt.set_defaults(func=cmd_gauntlet)

    topo = sub.add_parser("topo", help="topology presets")
    tsub = topo.add_subparsers(dest="topo_command", metavar="ACTION", required=True)
    tpresets = tsub.add_parser("presets", help="list the gauntlet's topology presets")
    tpresets.set_defaults(func=cmd_topo_presets)

    scen = sub.add_parser(
        "scenarios", help="list the canned scenarios, or those a Python file declares"
    )
    scen.add_argument(
        "--file",
        default=None,
        metavar="FILE.py",
        help="list the Scenarios this file declares (run one as FILE.py::NAME)",
    )
    scen.set_defaults(func=cmd_scenarios)
