#!/usr/bin/env python3
"""Gauntlet throughput: the same short variants serially and with the pool, in one run.

Prints both wall times and the speedup; every variant must pass in both
(a variant failing only under the pool would be contention, a false
failure).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ktstr import gauntlet
from ktstr.scheduler import EEVDF

PRESETS = "tiny-1llc,tiny-2llc,tiny-smt,numa4-4llc,numa2-2llc,smt-2llc"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cells = gauntlet.plan(["steady"], EEVDF, args.presets.split(","), None)
    times, verdicts = {}, {}
    for label, budget in (
        ("serial", gauntlet.default_budget(jobs=1)),
        ("pool", gauntlet.default_budget()),
    ):
        started = time.monotonic()
        done = gauntlet.run(cells, EEVDF, args.duration, None, None, lambda *a: None, budget)
        times[label] = round(time.monotonic() - started, 2)
        verdicts[label] = {c.variant.id: c.verdict for c in done}
    out = {
        "variants": len(cells),
        "serial_s": times["serial"],
        "pool_s": times["pool"],
        "speedup": round(times["serial"] / times["pool"], 2),
        "verdicts": verdicts,
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{len(cells)} variants: serial {times['serial']:.1f} s, pool {times['pool']:.1f} s,"
            f" speedup {out['speedup']:.2f}x"
        )
        for label, v in verdicts.items():
            print(f"{label}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
