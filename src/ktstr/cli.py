"""The ``ktstr`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

from ktstr import __version__, paths
from ktstr.disk import DISK_OPTION_HELP, Disk, parse_disk_option
from ktstr.errors import KtstrError
from ktstr.results.terminal import table
from ktstr.topology import Topology

# Subcommands import what they need when they run, so --help and quick
# commands do not pay for ELF parsing and compression libraries.
if TYPE_CHECKING:
    from ktstr.kernel.image import KernelInfo

ACCEL_CHOICES = ("auto", "kvm", "tcg")
FLAVOURS = ("cloud", "generic")

log = logging.getLogger("ktstr")


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _kernel_lines(info: KernelInfo) -> list[str]:
    return [
        f"release:    {info.release}",
        f"sched_ext:  {_yes(info.sched_ext)}",
        f"BTF:        {_yes(info.btf)}",
        f"SCHEDSTATS: {_yes(info.schedstats)}",
        f"boot:       {info.boot_method} ({info.boot_path})",
        f"size:       {info.size / 2**20:.1f} MiB",
        f"config:     {info.config_path or 'not found'}",
    ]


def cmd_kernel_fetch(args: argparse.Namespace) -> int:
    from ktstr.kernel import debian, store

    fetched = debian.fetch(args.flavour, args.suite, args.mirror, args.force)
    state = "already cached" if fetched.cached else "fetched"
    info = store.cached_info(fetched.entry)
    print(f"{state}: {fetched.release} in {fetched.entry} (sched_ext {_yes(info.sched_ext)})")
    return 0


def cmd_kernel_list(args: argparse.Namespace) -> int:
    from ktstr.kernel import store

    infos = [store.cached_info(d) for d in store.cached_dirs()]
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no kernels cached under {paths.kernels_dir()}; {store.FETCH_HINT}")
        return 0
    rows = [("release", "sched_ext", "BTF", "SCHEDSTATS", "boot", "size")]
    rows += [
        (
            i.release,
            _yes(i.sched_ext),
            _yes(i.btf),
            _yes(i.schedstats),
            i.boot_method,
            f"{i.size / 2**20:.1f} MiB",
        )
        for i in infos
    ]
    print("\n".join(table(rows)))
    return 0


def cmd_kernel_info(args: argparse.Namespace) -> int:
    from ktstr.kernel import store

    info = store.resolve(args.kernel)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print("\n".join(_kernel_lines(info)))
    return 0


def cmd_vm_probe(args: argparse.Namespace) -> int:
    from ktstr.probe import render, run_probe

    topology = Topology.parse(args.topology, args.memory)
    result = run_probe(topology, args.kernel, args.accel, args.timeout, disks=args.disk)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(render(result))
    return 0 if result.match else 1


def cmd_shell(args: argparse.Namespace) -> int:
    from ktstr.kernel import store
    from ktstr.vm import accel as accel_mod
    from ktstr.vm.boot import boot

    topology = Topology.parse(args.topology, args.memory)
    info = store.resolve(args.kernel)
    chosen = accel_mod.choose(args.accel, info.boot_path)
    print(f"{chosen.line()}; kernel {info.release}; topology {topology.name}", file=sys.stderr)
    run_dir = paths.new_run_dir(f"shell-{topology.name}")
    for i, disk in enumerate(args.disk):
        print(f"disk {i}: {disk.describe(i)}", file=sys.stderr)
    boot(
        topology,
        info,
        chosen,
        run_dir,
        {"mode": "shell"},
        timeout_s=args.timeout,
        interactive=True,
        disks=args.disk,
    )
    return 0


def cmd_gauntlet(args: argparse.Namespace) -> int:
    from ktstr import gauntlet
    from ktstr.presets import parse_shard
    from ktstr.results.progress import GauntletProgress
    from ktstr.scheduler import from_cli

    scheduler = from_cli(args.scheduler)
    presets = None if args.all_presets or not args.presets else args.presets.split(",")
    cells = gauntlet.plan(
        args.scenarios or ["steady"],
        scheduler,
        presets,
        args.profiles.split(",") if args.profiles else None,
        args.max_cpus,
        parse_shard(args.shard) if args.shard else None,
    )
    if args.budget:
        from ktstr.budget import select

        chosen = select(cells, scheduler.name, args.duration or 12.0, args.budget)
        print(f"budget: {chosen.summary()}", flush=True)
        cells = chosen.cells
    print(f"gauntlet: {len(cells)} variants", flush=True)

    budget = gauntlet.default_budget(args.jobs, args.mem_budget)
    print(
        f"budget: {budget.jobs} VMs at once, {budget.cpus} host CPUs, "
        f"{budget.memory_mib} MiB of guest RAM",
        flush=True,
    )
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

    width = max(map(len, CATALOG))
    for name, scenario in CATALOG.items():
        print(f"{name:<{width}}  {scenario.description}")
    return 0


EXIT_FOR_VERDICT = {"pass": 0, "skip": 0, "fail": 1, "inconclusive": 2}


def _print_run(record: dict, run_dir: str) -> None:
    from ktstr.checks.scheduler import bug_summary
    from ktstr.results.terminal import run_summary

    summary = bug_summary(record) if record.get("verdict") == "fail" else None
    if summary:
        print(summary)
        print()
    print(run_summary(record, run_dir))


def cmd_run(args: argparse.Namespace) -> int:
    from ktstr.runner import run_scenario, validate_expect_error
    from ktstr.scenario.catalog import get
    from ktstr.scheduler import from_cli

    scenario = get(args.scenario)
    topology = Topology.parse(args.topology, args.memory)
    scheduler = from_cli(args.scheduler)
    expect = {
        "error": validate_expect_error(args.expect_error) if args.expect_error else None,
        "fail": args.expect_fail,
    }
    if args.flags == "all":
        profiles = [p.name for p in scheduler.profiles()]
    else:
        scheduler.profile(args.flags)  # refuse unknown flags before booting
        profiles = [args.flags]
    worst = 0
    for profile in profiles:
        record, run_dir = run_scenario(
            scenario,
            topology,
            args.kernel,
            args.accel,
            args.duration,
            args.timeout,
            scheduler=scheduler,
            profile=profile,
            extra_args=tuple(args.sched_arg),
            expect=expect,
            disks=tuple(args.disk) or None,
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1, sort_keys=True)
        _print_run(record, str(run_dir))
        worst = max(worst, EXIT_FOR_VERDICT[record["verdict"]])
    return worst


def cmd_check(args: argparse.Namespace) -> int:
    from ktstr.checks import parse_overrides
    from ktstr.runner import apply_verdict, judge_record, load

    record, run_dir = load(args.run)
    apply_verdict(record, judge_record(record, parse_overrides(args.set)))
    _print_run(record, str(run_dir))
    return EXIT_FOR_VERDICT[record["verdict"]]


def cmd_schedulers_build(args: argparse.Namespace) -> int:
    from ktstr import testscheds
    from ktstr.kernel import store

    info = store.resolve(args.kernel)
    compilers = args.compiler.split(",") if args.compiler else None
    for directory in testscheds.build(info, compilers, args.force):
        names = ", ".join(sorted(p.name for p in directory.iterdir()))
        print(f"{directory}: {names}")
    return 0


def cmd_schedulers_list(args: argparse.Namespace) -> int:
    from ktstr import testscheds

    rows = testscheds.listing()
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no test schedulers built yet; run 'ktstr schedulers build'")
    else:
        keys = ("name", "release", "compiler", "built", "path")
        print("\n".join(table([keys] + [tuple(r[k] for k in keys) for r in rows])))
    return 0


def cmd_results_list(args: argparse.Namespace) -> int:
    from ktstr.results import store

    rows = store.query(store.parse_filters(args.filter))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs under {paths.runs_dir()} match; 'ktstr results reindex' rebuilds the index")
        return 0
    keys = ("run", "scenario", "topology", "scheduler", "profile", "kernel", "accel", "verdict")
    print("\n".join(table([keys] + [tuple(str(r[k] or "") for k in keys) for r in rows])))
    return 0


def cmd_results_show(args: argparse.Namespace) -> int:
    from ktstr.results import store
    from ktstr.runner import load

    record, run_dir = load(store.run_path(args.run))
    _print_run(record, str(run_dir))
    return 0


def cmd_results_reindex(args: argparse.Namespace) -> int:
    from ktstr.results import store

    print(f"indexed {store.reindex()} runs under {paths.runs_dir()}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from ktstr.results.metrics import METRICS

    rows = [("metric", "unit", "better", "abs threshold", "rel threshold", "meaning")]
    for m in METRICS.values():
        rows.append(
            (
                m.name,
                m.unit or "-",
                "higher" if m.higher_is_better else "lower",
                f"{m.abs_threshold:g}",
                f"{m.rel_threshold:.0%}",
                m.description,
            )
        )
    print("\n".join(table(rows)))
    return 0


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from ktstr.results import baselines, store

    runs = baselines.save(args.name, store.parse_filters(args.from_))
    print(f"baseline {args.name}: {len(runs)} runs")
    return 0


def _scheduler_vs(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Run the scenario under --against (A) and --scheduler (B), --runs times each."""
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get
    from ktstr.scheduler import from_cli

    if not args.scenario:
        raise KtstrError(
            "--scheduler/--against need a scenario",
            "e.g. ktstr compare --scheduler scx_simple --against eevdf steady",
        )
    topology = Topology.parse(args.topology)
    sides: tuple[list[dict], list[dict]] = ([], [])
    for i in range(args.runs):
        for side, name in enumerate((args.against, args.scheduler)):
            record, run_dir = run_scenario(
                get(args.scenario),
                topology,
                args.kernel,
                None,
                args.duration,
                scheduler=from_cli(name),
            )
            print(
                f"run {i + 1}/{args.runs} {name}: {record['verdict']} ({run_dir})",
                file=sys.stderr,
                flush=True,
            )
            sides[side].append(record)
    return sides


def cmd_compare(args: argparse.Namespace) -> int:
    from ktstr.results import baselines, compare

    args.scenario = args.sides[0] if args.scheduler and args.sides else None
    policy = compare.load_policy(args.policy)
    if args.scheduler:
        a, b = _scheduler_vs(args)
        labels = (args.against, args.scheduler)
    else:
        if len(args.sides) != 2:
            raise KtstrError(
                "compare needs two sides (A B) or --scheduler with --against",
                "e.g. ktstr compare main-baseline scheduler=scx_simple",
            )
        a, b = (baselines.records(side) for side in args.sides)
        labels = tuple(args.sides)
    rows = compare.compare(a, b, policy)
    if not rows:
        raise KtstrError(
            "the two sides share no (scenario, topology, profile) with metrics",
            "compare runs of the same scenario on the same topology",
        )
    if args.json:
        print(json.dumps(compare.as_json(rows), indent=1))
    else:
        print(compare.render(rows, f"A: {labels[0]}", f"B: {labels[1]}", sys.stdout.isatty()))
    if args.html:
        from ktstr.results.report import compare_html

        with open(args.html, "w") as f:
            f.write(compare_html(rows, labels[0], labels[1]))
    return 1 if any(r.verdict == "regression" for r in rows) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ktstr.results import baselines, report, store

    try:
        records = [json.loads((store.run_path(args.what) / "record.json").read_text())]
    except KtstrError:
        records = baselines.records(args.what)
    out = Path(args.output or ("report.md" if args.format == "md" else "report.html"))
    if args.format == "md":
        report.markdown_report(records, out)
    else:
        out.write_text(report.html_report(records, f"ktstr report: {args.what}"))
    print(f"wrote {out} ({len(records)} run{'s' if len(records) != 1 else ''})")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ktstr import doctor

    results = doctor.checks()
    print(doctor.render(results))
    return 0 if all(c.ok or not c.required for c in results) else 1


def _disk_arg(text: str) -> Disk:
    try:
        return parse_disk_option(text)
    except KtstrError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _vm_options(p: argparse.ArgumentParser, timeout: float | None = None) -> None:
    p.add_argument(
        "--disk",
        action="append",
        type=_disk_arg,
        default=[],
        metavar="SPEC",
        help=DISK_OPTION_HELP + "; replaces a scenario's own disks",
    )
    p.add_argument(
        "--topology",
        "-t",
        default="1n2l2c1t",
        help="CPU topology as <N>n<L>l<C>c<T>t: NUMA nodes, LLCs, cores per LLC, "
        "threads per core (default: %(default)s)",
    )
    p.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="MIB",
        help="guest RAM in MiB (default: 512 + 16 per vCPU)",
    )
    p.add_argument(
        "--kernel",
        "-k",
        default=None,
        help="bzImage/vmlinux path, kernel build tree, or cached release "
        "(default: $KTSTR_KERNEL, else the newest cached kernel with sched_ext)",
    )
    p.add_argument(
        "--accel",
        choices=ACCEL_CHOICES,
        default=None,
        help="accelerator (default: $KTSTR_ACCEL, else auto: KVM only if it really "
        "works here, else TCG)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="S",
        help="kill the VM after S seconds (default: scaled to the topology)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ktstr",
        description="Test Linux process schedulers (sched_ext and EEVDF) in QEMU VMs whose "
        "CPU topology is declared in code.",
        epilog="Caches live under $KTSTR_CACHE_DIR (default ~/.cache/ktstr); run output under "
        "$KTSTR_RUNS_DIR (default ./runs).",
    )
    top.add_argument("--version", action="version", version=f"ktstr {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="debug output")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    kernel = sub.add_parser("kernel", help="fetch, list and inspect kernels")
    ksub = kernel.add_subparsers(dest="kernel_command", metavar="ACTION", required=True)
    fetch = ksub.add_parser(
        "fetch",
        help="download Debian's sched_ext kernel into the cache",
        description="Download the kernel a Debian meta package points at "
        "(plus its modules), verify it against the apt index "
        "and unpack it, with an ELF vmlinux for direct boot.",
    )
    fetch.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="cloud",
        help="kernel flavour (default: %(default)s, the smallest)",
    )
    fetch.add_argument(
        "--suite",
        default="unstable",
        help="Debian suite (default: %(default)s, whose kernels have sched_ext)",
    )
    fetch.add_argument(
        "--mirror",
        default=None,
        help="Debian archive URL (default: $KTSTR_MIRROR, else the one this machine's apt uses)",
    )
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    fetch.set_defaults(func=cmd_kernel_fetch)
    klist = ksub.add_parser("list", help="list cached kernels")
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(func=cmd_kernel_list)
    kinfo = ksub.add_parser("info", help="show a kernel's release, sched_ext, BTF, boot method")
    kinfo.add_argument("kernel", help="cached release or path to a bzImage/vmlinux")
    kinfo.add_argument("--json", action="store_true")
    kinfo.set_defaults(func=cmd_kernel_info)

    vm = sub.add_parser("vm", help="boot VMs")
    vsub = vm.add_subparsers(dest="vm_command", metavar="ACTION", required=True)
    probe = vsub.add_parser(
        "probe",
        help="boot a topology and compare what the guest sees",
        description="Boot the topology, print requested vs guest-observed "
        "layout side by side; exit 1 on any difference.",
    )
    _vm_options(probe)
    probe.add_argument("--json", action="store_true", help="print one JSON object")
    probe.set_defaults(func=cmd_vm_probe)

    shell = sub.add_parser(
        "shell",
        help="interactive shell in a VM, for debugging",
        description="Boot the topology and open a busybox shell on the "
        "console; exiting the shell powers the VM off.",
    )
    _vm_options(shell, timeout=24 * 3600)
    shell.set_defaults(func=cmd_shell)

    run = sub.add_parser(
        "run",
        help="run a scenario in a VM and judge it",
        description="Boot the topology, run the scenario's cgroups and workers, judge the "
        "record (not_stuck, fairness, isolation, kernel_health) and print the verdict. Exit "
        "0 pass, 1 fail, 2 inconclusive or error. The record is saved as record.json in the "
        "run directory.",
    )
    run.add_argument("scenario", help="scenario name (see 'ktstr scenarios')")
    _vm_options(run)
    run.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="scenario duration in seconds (default: the scenario's, 12)",
    )
    run.add_argument("--json", default=None, metavar="FILE", help="also write the record here")
    run.add_argument(
        "--scheduler",
        "-s",
        default=None,
        help="sched_ext scheduler: a name found in $KTSTR_SCHEDULER_BIN_<NAME>, "
        "$KTSTR_SCHEDULER, $PATH or the built test schedulers (scx_simple, "
        "scx_qmap, ...), or a path (default: none, EEVDF)",
    )
    run.add_argument(
        "--flags", default=None, help="flag profile, e.g. a,b; 'all' runs every valid profile"
    )
    run.add_argument(
        "--sched-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the scheduler; repeatable (--sched-arg=-e --sched-arg=100)",
    )
    run.add_argument(
        "--expect-error",
        default=None,
        metavar="REGEX",
        help="pass only if a scheduler failure message matches REGEX",
    )
    run.add_argument(
        "--expect-fail", action="store_true", help="pass only if the run fails (pin a known bug)"
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check",
        help="re-judge a stored run without booting",
        description="Load runs/<dir>/record.json and judge it again, optionally with other "
        "thresholds (--set not_stuck.max_gap_ms=500).",
    )
    check.add_argument("run", help="run directory (or its record.json)")
    check.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="CHECK.KEY=VALUE",
        help="override a threshold; repeatable",
    )
    check.set_defaults(func=cmd_check)

    scheds = sub.add_parser("schedulers", help="build and list the kernel's example schedulers")
    ssub = scheds.add_subparsers(dest="schedulers_command", metavar="ACTION", required=True)
    sbuild = ssub.add_parser(
        "build",
        help="build tools/sched_ext from the kernel's Debian source package",
        description="Download Debian's linux-source matching the kernel, build scx_simple, "
        "scx_qmap, scx_central, ... with each installed clang (19, 22) into the cache.",
    )
    sbuild.add_argument("--kernel", "-k", default=None, help="kernel (default: as for runs)")
    sbuild.add_argument("--compiler", default=None, help="e.g. 19,22 (default: every one found)")
    sbuild.add_argument("--force", action="store_true", help="rebuild even if cached")
    sbuild.set_defaults(func=cmd_schedulers_build)
    slist = ssub.add_parser("list", help="list built test schedulers")
    slist.add_argument("--json", action="store_true")
    slist.set_defaults(func=cmd_schedulers_list)

    gaunt = sub.add_parser(
        "gauntlet",
        help="run scenarios across topology presets and flag profiles",
        description="Expand scenarios x presets x profiles, run each variant in its own VM "
        "in parallel within a CPU and memory budget, stream each record to disk, and end "
        "with a matrix. Ctrl-C stops every VM and keeps the finished records.",
    )
    gaunt.add_argument("scenarios", nargs="*", help="scenario names (default: steady)")
    gaunt.add_argument("--scheduler", "-s", default=None, help="as for 'ktstr run'")
    gaunt.add_argument("--presets", default=None, help="comma-separated preset names")
    gaunt.add_argument("--all-presets", action="store_true", help="every preset within --max-cpus")
    gaunt.add_argument("--profiles", default=None, help="comma-separated flag profiles")
    gaunt.add_argument(
        "--max-cpus",
        type=int,
        default=16,
        help="skip presets with more vCPUs (default: %(default)s)",
    )
    gaunt.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N")
    gaunt.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run the subset that covers the most configurations (scheduler, profile, CPU/LLC "
        "buckets, SMT, NUMA, scenario) within this many estimated seconds; estimates are "
        "calibrated from this host's runs",
    )
    gaunt.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="VMs at once, at most (default: the host's CPU count)",
    )
    gaunt.add_argument(
        "--mem-budget",
        type=int,
        default=None,
        metavar="MIB",
        help="guest RAM of all running VMs together (default: 80%% of the host's available memory)",
    )
    gaunt.add_argument("--duration", type=float, default=None, metavar="S")
    gaunt.add_argument("--kernel", "-k", default=None)
    gaunt.add_argument("--accel", choices=ACCEL_CHOICES, default=None)
    gaunt.set_defaults(func=cmd_gauntlet)

    topo = sub.add_parser("topo", help="topology presets")
    tsub = topo.add_subparsers(dest="topo_command", metavar="ACTION", required=True)
    tpresets = tsub.add_parser("presets", help="list the gauntlet's topology presets")
    tpresets.set_defaults(func=cmd_topo_presets)

    scen = sub.add_parser("scenarios", help="list the canned scenarios")
    scen.set_defaults(func=cmd_scenarios)

    results = sub.add_parser("results", help="list and show stored runs")
    rsub = results.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    rlist = rsub.add_parser("list", help="runs in the index, oldest first")
    rlist.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. scheduler=scx_simple kernel=7.2 (prefix match); repeatable",
    )
    rlist.add_argument("--json", action="store_true")
    rlist.set_defaults(func=cmd_results_list)
    rshow = rsub.add_parser("show", help="one run's verdict and statistics")
    rshow.add_argument("run", help="run directory name (see 'ktstr results list') or path")
    rshow.set_defaults(func=cmd_results_show)
    rre = rsub.add_parser("reindex", help="rebuild the index from the records on disk")
    rre.set_defaults(func=cmd_results_reindex)

    metrics = sub.add_parser("metrics", help="list the metrics compare uses")
    metrics.set_defaults(func=cmd_metrics)

    base = sub.add_parser("baseline", help="save a selection of runs under a name")
    bsub = base.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    bsave = bsub.add_parser("save", help="save the runs matching --from as baseline NAME")
    bsave.add_argument("name")
    bsave.add_argument(
        "--from",
        dest="from_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="selection, as for 'results list --filter' (default: every run)",
    )
    bsave.set_defaults(func=cmd_baseline_save)

    comp = sub.add_parser(
        "compare",
        help="compare two sets of runs, metric by metric",
        description="Compare A and B (each a baseline name, a selection such as "
        "scheduler=scx_simple,kernel=7.2, or a git revision of the project the runs were made "
        "in), paired by scenario, topology and profile: mean, 95% "
        "interval, Mann-Whitney p-value and a verdict. A regression needs the absolute and "
        "relative thresholds and p < 0.05; exit 1 on any regression. With --scheduler and "
        "--against, run both first.",
    )
    comp.add_argument("sides", nargs="*", help="A B, or with --scheduler: the scenario")
    comp.add_argument("--scheduler", default=None, help="B: run this scheduler ...")
    comp.add_argument("--against", default="eevdf", help="A: ... against this (default eevdf)")
    comp.add_argument("--topology", default="1n2l2c1t")
    comp.add_argument("--runs", type=int, default=3, help="runs per side (default: %(default)s)")
    comp.add_argument("--duration", type=float, default=None, metavar="S")
    comp.add_argument("--kernel", "-k", default=None)
    comp.add_argument(
        "--policy",
        default=None,
        metavar="FILE",
        help='JSON thresholds per metric: {"worst_gap": {"abs": 100, "rel": 0.2}}',
    )
    comp.add_argument("--json", action="store_true")
    comp.add_argument(
        "--html",
        default=None,
        metavar="FILE",
        help="also write an HTML page with side-by-side bars and 95%% intervals",
    )
    comp.set_defaults(func=cmd_compare)

    rep = sub.add_parser(
        "report",
        help="write an HTML (or Markdown) report with plots",
        description="Report on one run (its directory name or path), a baseline, or a "
        "selection such as scenario=steady,scheduler=scx_simple: verdicts, findings, "
        "per-cgroup statistics, a per-CPU utilization heatmap, CPU share vs cpu.weight, "
        "longest gaps and wake latencies. HTML is one self-contained file.",
    )
    rep.add_argument("what", help="run, baseline name or selection")
    rep.add_argument("-o", "--output", default=None, help="output file (default report.html)")
    rep.add_argument("--format", choices=("html", "md"), default="html")
    rep.set_defaults(func=cmd_report)

    doc = sub.add_parser("doctor", help="check this host and say how to fix what is missing")
    doc.set_defaults(func=cmd_doctor)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="ktstr: %(message)s"
    )
    try:
        return args.func(args)
    except KtstrError as err:
        print(f"ktstr: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ktstr: interrupted; the VM was shut down", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
