"""``ktstr run`` and ``ktstr check``: run one scenario, or judge a stored run again."""

from __future__ import annotations

import argparse
import json

from ktstr.cli.common import (
    EXIT_FOR_VERDICT,
    include_option,
    monitor_from_args,
    monitor_options,
    positive,
    print_run,
    vm_options,
)
from ktstr.topology import Topology


def cmd_run(args: argparse.Namespace) -> int:
    from ktstr import userfile
    from ktstr.checks.expectations import validate_expect_error
    from ktstr.initramfs.include import check
    from ktstr.runner import run_scenario

    scenario = userfile.scenario(args.scenario)
    topology = Topology.parse(args.topology, args.memory)
    scheduler = userfile.scheduler(args.scheduler)
    check([*scenario.include_files, *args.include, *scheduler.config_files()])
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
            include=tuple(args.include),
            monitor=monitor_from_args(args),
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1, sort_keys=True)
        print_run(record, str(run_dir))
        worst = max(worst, EXIT_FOR_VERDICT[record["verdict"]])
    return worst


def cmd_check(args: argparse.Namespace) -> int:
    from ktstr.checks import judge, parse_overrides
    from ktstr.record import load
    from ktstr.record.builder import with_verdict

    record, run_dir = load(args.run)
    with_verdict(record, judge(record, parse_overrides(args.set)))
    print_run(record, str(run_dir))
    return EXIT_FOR_VERDICT[record["verdict"]]


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="run a scenario in a VM and judge it",
        description="Boot the topology, run the scenario's cgroups and workers, judge the "
        "record (not_stuck, fairness, isolation, kernel_health) and print the verdict. Exit "
        "0 pass, 1 fail, 2 inconclusive or error. The record is saved as record.json in the "
        "run directory.",
    )
    run.add_argument(
        "scenario",
        help="scenario name (see 'ktstr scenarios'), or path/file.py::NAME for a Scenario "
        "declared in a Python file",
    )
    vm_options(run)
    include_option(run)
    monitor_options(run)
    run.add_argument(
        "--duration",
        type=positive("--duration"),
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
        "scx_qmap, ...), a path, or path/file.py::NAME for a Scheduler declared in a "
        "Python file, with its flags (default: none, EEVDF)",
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
