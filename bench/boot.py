#!/usr/bin/env python3
"""VM lifecycle cost: ktstr's probe vs the floor of the same QEMU + kernel + accelerator.

The floor boots a busybox-only initramfs whose /init powers off at once;
ktstr boots its Python agent, reports the topology over virtio-serial and
powers off.  Both are timed from process start to exit, interleaved, and
the median of N runs is compared.  Prints a table, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ktstr.initramfs.image import busybox_archive
from ktstr.kernel.store import resolve
from ktstr.topology import Topology
from ktstr.vm.accel import choose
from ktstr.vm.qemu import VmConfig, build_argv

TOPOLOGIES = {"2": "1n1l2c1t", "8": "1n2l4c1t"}


def floor_initrd(path: Path) -> None:
    archive = busybox_archive("#!/bin/busybox sh\n/bin/busybox poweroff -f\n")
    with open(path, "wb") as f:
        archive.write(f)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench: {argv[0]} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", "-n", type=int, default=5, help="lifecycles per configuration")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    kernel = resolve()
    accel = choose(None, kernel.boot_path)
    floor: dict[str, list[float]] = {k: [] for k in TOPOLOGIES}
    ours: dict[str, list[float]] = {k: [] for k in TOPOLOGIES}
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-") as tmp:
        initrd = Path(tmp) / "floor.cpio"
        floor_initrd(initrd)
        env = dict(os.environ, KTSTR_RUNS_DIR=str(Path(tmp) / "runs"), KTSTR_ACCEL=accel.name)
        probe = [sys.executable, "-m", "ktstr.cli", "vm", "probe", "--kernel", kernel.boot_path]
        # Warm up both paths (page cache, the cached base image).
        timed(probe + ["-t", "1n1l1c1t"], env)
        for i in range(args.runs + 1):
            for cpus, topo in TOPOLOGIES.items():
                cfg = VmConfig(kernel.boot_path, str(initrd), Topology.parse(topo), accel.name)
                f = timed(build_argv(cfg))
                k = timed(probe + ["-t", topo], env)
                if i:  # the first round is a warm-up
                    floor[cpus].append(f)
                    ours[cpus].append(k)
    med = {
        name: {c: round(statistics.median(v), 3) for c, v in d.items()}
        for name, d in (("floor_s", floor), ("ktstr_s", ours))
    }
    med["ratio"] = {c: round(med["ktstr_s"][c] / med["floor_s"][c], 3) for c in TOPOLOGIES}
    if args.json:
        print(json.dumps(med))
        return 0
    print(f"kernel {kernel.release}, {accel.line()}, median of {args.runs} runs")
    print(f"{'vCPUs':>5}  {'floor s':>8}  {'ktstr s':>8}  {'ratio':>6}")
    for c in TOPOLOGIES:
        print(
            f"{c:>5}  {med['floor_s'][c]:>8.2f}  {med['ktstr_s'][c]:>8.2f}  {med['ratio'][c]:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
