#!/usr/bin/env python3
"""Detection latency: from the kernel reporting a scheduler fault to ktstr having it.

For each fault scx_qmap can inject, one run of `steady`; the latency is
the time between the kernel logging `sched_ext: ... disabled (...)`
(the record's own timestamp) and the guest agent sending that record to
the host (both guest clocks; the virtio-serial hop adds well under a
millisecond).  Printed next to how long the kernel itself took to notice
(its watchdog), which ktstr cannot shorten.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from ktstr.runner import run_scenario
from ktstr.scenario.catalog import get
from ktstr.scheduler import Scheduler
from ktstr.topology import Topology

FAULTS = {
    "error (-e 100)": ["-e", "100"],
    "stall (-t 50)": ["-t", "50"],
    "dispatch loop (-l 100)": ["-l", "100"],
}
_WAITED = re.compile(r"for ([\d.]+)s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--topology", default="1n2l2c1t")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = {}
    for label, fault in FAULTS.items():
        record, run_dir = run_scenario(
            get("steady"),
            Topology.parse(args.topology),
            duration_s=12,
            scheduler=Scheduler("scx_qmap", "scx_qmap"),
            extra_args=tuple(fault),
        )
        kmsg = record["scheduler"]["kmsg"]
        hit = next((k for k in kmsg if "disabled (" in k["text"]), None)
        if hit is None:
            rows[label] = {"error": "the kernel reported nothing", "run_dir": str(run_dir)}
            continue
        waited = next(
            (
                float(m.group(1))
                for k in kmsg
                for m in [_WAITED.search(k["text"])]
                if m and "failed to" in k["text"]
            ),
            None,
        )
        rows[label] = {
            "latency_s": round(hit["mono"] - hit["usec"] / 1e6, 4),
            "kernel_watchdog_s": waited,
            "finding": next(
                (f["kind"] for f in record["findings"] if f["check"] == "scheduler"), None
            ),
            "run_dir": str(run_dir),
        }
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'fault':<24} {'ktstr latency s':>15} {'kernel watchdog s':>18}  finding")
    for label, row in rows.items():
        if "error" in row:
            print(f"{label:<24} {row['error']}")
            continue
        watchdog = "-" if row["kernel_watchdog_s"] is None else f"{row['kernel_watchdog_s']:.3f}"
        print(f"{label:<24} {row['latency_s']:>15.4f} {watchdog:>18}  {row['finding']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
