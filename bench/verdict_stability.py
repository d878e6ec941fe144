#!/usr/bin/env python3
"""False-failure rate: run correct scenarios N times and count passes per check.

A correct scheduler (the kernel's own by default, or ``--scheduler``)
must pass every time; any failure here is a threshold or a measurement
that noise can trip.  Every run's record is kept under the runs
directory for inspection.  The host-side monitor's checks are report-only
by default: a condition they saw is counted as ``seen``; with
``--monitor-enforce`` it fails the run like any other check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict

from ktstr.monitor.settings import MonitorSettings
from ktstr.runner import run_scenario
from ktstr.scenario.catalog import get
from ktstr.scheduler import from_cli
from ktstr.topology import Topology


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=10, help="runs per scenario and topology")
    ap.add_argument("--scenarios", default="steady,mixed_workloads")
    ap.add_argument("--topologies", default="1n2l2c1t,2n4l2c1t")
    ap.add_argument(
        "--duration", type=float, default=None, help="seconds per run (default: the scenario's)"
    )
    ap.add_argument("--scheduler", default=None, help="a sched_ext scheduler (default: EEVDF)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--monitor-enforce", action="store_true", help="let the monitor checks fail runs"
    )
    args = ap.parse_args()
    monitor = MonitorSettings(enforce=args.monitor_enforce)
    scheduler = from_cli(args.scheduler)
    passes: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    verdicts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    runs: dict[str, list[str]] = defaultdict(list)
    for i in range(args.runs):
        for topo in args.topologies.split(","):
            for name in args.scenarios.split(","):
                record, run_dir = run_scenario(
                    get(name),
                    Topology.parse(topo),
                    duration_s=args.duration,
                    scheduler=scheduler,
                    monitor=monitor,
                )
                verdicts[(name, topo)][record["verdict"]] += 1
                runs[f"{name}/{topo}"].append(str(run_dir))
                for f in record["findings"]:
                    seen = f["check"] == "monitor" and f["message"].startswith("report-only")
                    passes[(name, topo, f["check"])]["seen" if seen else f["status"]] += 1
                print(
                    f"run {i + 1}/{args.runs} {name} {topo}: {record['verdict']} ({run_dir})",
                    file=sys.stderr,
                )
    table = {f"{n}/{t}/{c}": dict(v) for (n, t, c), v in sorted(passes.items())}
    summary = {f"{n}/{t}": dict(v) for (n, t), v in sorted(verdicts.items())}
    if args.json:
        print(json.dumps({"checks": table, "verdicts": summary, "runs": runs}, indent=1))
        return 0
    print(f"{'scenario/topology/check':<44} {'pass rate':>9}  statuses")
    for key, counts in table.items():
        total = sum(counts.values())
        ok = counts.get("pass", 0) + counts.get("skip", 0) + counts.get("seen", 0)
        print(f"{key:<44} {ok / total:>9.0%}  {counts}")
    for key, counts in summary.items():
        print(f"verdicts {key}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
