#!/usr/bin/env python3
"""What the host-side monitor costs the guest, and how well it keeps its period.

Runs ``steady`` with the monitor on (0.1 s) and off, interleaved ABBA so a
host busy early or late weighs on both sides alike, and compares the
workers' total work units (the guest's throughput).  From the runs with
the monitor on: the achieved sampling interval (median and p99 against the
requested period) and the time one sample takes.  Then one run of
scx_qmap with a stalled task (``-t 2``) times the failure dump (the VM is
paused for that long).  Prints a table, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import statistics

from ktstr.monitor.settings import MonitorSettings
from ktstr.runner import run_scenario
from ktstr.scenario.catalog import get
from ktstr.scheduler import from_cli
from ktstr.topology import Topology

PERIOD_S = 0.1


def units(record: dict) -> int:
    return sum(w.get("units") or 0 for w in record.get("workers", []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", "-n", type=int, default=2, help="ABBA rounds (4 runs each)")
    ap.add_argument("--topology", default="1n1l2c1t")
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--scheduler", default="scx_simple")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    topo = Topology.parse(args.topology)
    scheduler = from_cli(args.scheduler)
    got: dict[bool, list[int]] = {True: [], False: []}
    intervals: list[dict] = []
    reads: list[dict] = []
    for _ in range(args.pairs):
        for on in (True, False, False, True):
            record, _ = run_scenario(
                get("steady"),
                topo,
                duration_s=args.duration,
                scheduler=scheduler,
                monitor=MonitorSettings(PERIOD_S if on else 0.0),
            )
            got[on].append(units(record))
            mon = record["monitor"]
            if on and mon.get("interval_s"):
                intervals.append(mon["interval_s"])
                reads.append(mon["read_s"])
    record, _ = run_scenario(
        get("steady"),
        topo,
        duration_s=args.duration,
        scheduler=from_cli("scx_qmap"),
        extra_args=("-t", "2"),
        monitor=MonitorSettings(PERIOD_S),
    )
    dump = record["monitor"].get("dump") or {}
    out = {
        "topology": args.topology,
        "scheduler": args.scheduler,
        "units_on": got[True],
        "units_off": got[False],
        "throughput_ratio": round(sum(got[True]) / max(1, sum(got[False])), 3),
        "interval_median_s": round(statistics.median(i["median"] for i in intervals), 4)
        if intervals
        else None,
        "interval_p99_s": max((i["p99"] for i in intervals), default=None),
        "read_median_s": round(statistics.median(r["median"] for r in reads), 4) if reads else None,
        "dump_s": dump.get("took_s"),
        "dump_paused": dump.get("paused"),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"monitor on vs off, {args.pairs} ABBA rounds of steady on {args.topology} under "
          f"{args.scheduler}, {args.duration:g} s each")  # fmt: skip
    print(f"  work units on:  {out['units_on']}")
    print(f"  work units off: {out['units_off']}")
    print(f"  throughput ratio on/off: {out['throughput_ratio']} (target >= 0.95)")
    print(f"  sample interval: median {out['interval_median_s']} s, worst p99 "
          f"{out['interval_p99_s']} s (asked {PERIOD_S} s)")  # fmt: skip
    print(f"  one sample read: median {out['read_median_s']} s")
    print(f"  failure dump (scx_qmap -t 2): {out['dump_s']} s, paused: {out['dump_paused']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
