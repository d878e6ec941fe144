"""Stored runs: ``results``, ``metrics``, ``baseline save``, ``compare``, ``report``."""

from __future__ import annotations

import argparse
import json
import sys

from ktstr import paths
from ktstr.cli.common import positive, print_run
from ktstr.errors import KtstrError
from ktstr.results.terminal import table
from ktstr.topology import Topology


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
    from ktstr.record import load
    from ktstr.results import store

    record, run_dir = load(store.run_path(args.run))
    print_run(record, str(run_dir))
    return 0


def cmd_results_reindex(args: argparse.Namespace) -> int:
    from ktstr.results import store

    print(f"indexed {store.reindex()} runs under {paths.runs_dir()}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from ktstr.results.metrics import (
        METRICS,
        PAYLOAD_ABS_THRESHOLD,
        PAYLOAD_REL_THRESHOLD,
        STEP_METRICS,
    )

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
    rows.append(
        (
            "<cgroup>/<payload>.<metric>",
            "declared",
            "declared",
            f"{PAYLOAD_ABS_THRESHOLD:g}",
            f"{PAYLOAD_REL_THRESHOLD:.0%}",
            "each metric of a payload run (docs/payloads.md)",
        )
    )
    rows.append(
        (
            "step<N>.<metric>",
            "as <metric>",
            "as <metric>",
            "as <metric>",
            "as <metric>",
            f"one of {', '.join(STEP_METRICS)} over step N of a scenario of several",
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
    from ktstr import userfile
    from ktstr.runner import run_scenario

    if not args.scenario:
        raise KtstrError(
            "--scheduler/--against need a scenario",
            "e.g. ktstr compare --scheduler scx_simple --against eevdf steady",
        )
    topology = Topology.parse(args.topology)
    scenario = userfile.scenario(args.scenario)  # a catalog name or file.py::NAME
    schedulers = [userfile.scheduler(name) for name in (args.against, args.scheduler)]
    sides: tuple[list[dict], list[dict]] = ([], [])
    for i in range(args.runs):
        for side, name in enumerate((args.against, args.scheduler)):
            record, run_dir = run_scenario(
                scenario,
                topology,
                args.kernel,
                None,
                args.duration,
                scheduler=schedulers[side],
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

    from ktstr.record import load
    from ktstr.results import baselines, report, store

    try:
        record, run_dir = load(store.run_path(args.what))
        records = [record]
    except KtstrError:
        records = baselines.records(args.what)
    else:
        from ktstr.results import dump_text

        if (run_dir / dump_text.FILE).is_file():  # the monitor's failure dump, as text
            record["_failure_dump"] = dump_text.render(dump_text.load(run_dir))  # type: ignore[typeddict-unknown-key]
    out = Path(args.output or ("report.md" if args.format == "md" else "report.html"))
    if args.format == "md":
        report.markdown_report(records, out)
    else:
        out.write_text(report.html_report(records, f"ktstr report: {args.what}"))
    print(f"wrote {out} ({len(records)} run{'s' if len(records) != 1 else ''})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
    comp.add_argument(
        "--runs",
        type=positive("--runs", int, "5"),
        default=3,
        help="runs per side (default: %(default)s)",
    )
    comp.add_argument("--duration", type=positive("--duration"), default=None, metavar="S")
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
