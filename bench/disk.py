#!/usr/bin/env python3
"""Disks: what attaching one costs at boot, and how closely QEMU's IOPS limit holds.

Boot cost: `ktstr vm probe` with and without one disk, interleaved,
median of N runs each; the disk run adds the driver module (loaded in the
guest), the device probe and the QMP monitor.  The ratio is printed.

Throttle fidelity: for each IOPS limit, two random readers on a disk
throttled to it for 5 s; measured IOPS / limit is printed (1.00 is exact),
next to what one unthrottled reader does in the same VM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from ktstr.disk import Disk, Throttle
from ktstr.runner import run_scenario
from ktstr.scenario.model import CgroupDef, Op, Scenario, Step
from ktstr.scenario.work import io_rand_read
from ktstr.topology import Topology

TOPOLOGY = "1n1l2c1t"


def _probe_s(disk: bool) -> float:
    argv = [sys.executable, "-m", "ktstr.cli", "vm", "probe", "--topology", TOPOLOGY]
    if disk:
        argv += ["--disk", "64MiB"]
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - started


def boot_cost(runs: int) -> dict[str, float]:
    _probe_s(True)  # warm-up: base image and kernel info cached
    bare, with_disk = [], []
    for _ in range(runs):
        bare.append(_probe_s(False))
        with_disk.append(_probe_s(True))
    b, d = statistics.median(bare), statistics.median(with_disk)
    return {"without_s": round(b, 2), "with_disk_s": round(d, 2), "ratio": round(d / b, 2)}


def throttle(limit: int) -> dict[str, float]:
    disks = (Disk("16MiB", throttle=Throttle(iops=limit)), Disk("16MiB", serial="free"))
    scenario = Scenario(
        f"bench_throttle_{limit}",
        "two readers on a throttled disk, one on a free one",
        [
            Step(
                [
                    Op.add_cgroup(CgroupDef("slow", workers=2, work=io_rand_read(disk=0))),
                    Op.add_cgroup(CgroupDef("fast", workers=1, work=io_rand_read(disk=1))),
                ]
            )
        ],
        duration_s=5,
        disks=disks,
    )
    record, _ = run_scenario(scenario, Topology.parse(TOPOLOGY))
    slow, free = record["disks"]
    return {
        "limit": limit,
        "measured": slow["workers"]["iops"],
        "ratio": round(slow["workers"]["iops"] / limit, 3),
        "unthrottled": free["workers"]["iops"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=5, help="boots per side (default 5)")
    ap.add_argument("--limits", default="50,200,500", help="IOPS limits to measure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {
        "boot": boot_cost(args.runs),
        "throttle": [throttle(int(x)) for x in args.limits.split(",")],
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    b = out["boot"]
    print(
        f"boot, {TOPOLOGY}: without a disk {b['without_s']} s, with one {b['with_disk_s']} s, "
        f"ratio {b['ratio']}"
    )
    print("limit  measured  measured/limit  unthrottled")
    for t in out["throttle"]:
        print(f"{t['limit']:>5}  {t['measured']:>8}  {t['ratio']:>14}  {t['unthrottled']:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
