#!/usr/bin/env python3
"""The Dask executor's overhead: the same short variants on the local pool and on
``--dask local:2``, in one run.

Prints both wall times (summed over alternating rounds), their ratio
(dask / pool), the overhead per variant, and every verdict both ways.  Run it with
the host's VM slots as the other benchmarks do: both sides start at most
that many VMs at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# This script's own name shadows Dask's ``distributed`` package while bench/ is on the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from ktstr import gauntlet  # noqa: E402
from ktstr.distributed.executor import DaskExecutor  # noqa: E402
from ktstr.scheduler import EEVDF  # noqa: E402

PRESETS = "tiny-1llc,tiny-2llc,tiny-smt,smt-2llc"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=2, help="local Dask workers (and pool jobs)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cells = gauntlet.plan(["steady"], EEVDF, args.presets.split(","), None)
    executors = {"pool": None, "dask": DaskExecutor(f"local:{args.workers}")}
    # ABBA... order: a host busy with other work early or late weighs on both sides alike.
    order = [
        label for r in range(args.rounds) for label in (("pool", "dask"), ("dask", "pool"))[r % 2]
    ]
    times: dict[str, float] = {"pool": 0.0, "dask": 0.0}
    verdicts: dict[str, list[dict[str, str]]] = {"pool": [], "dask": []}
    rounds: list[tuple[str, float]] = []
    for label in order:
        started = time.monotonic()
        done = gauntlet.run(
            cells,
            EEVDF,
            args.duration,
            None,
            None,
            lambda *a: None,
            gauntlet.default_budget(jobs=args.workers),
            executor=executors[label],
        )
        times[label] += time.monotonic() - started
        rounds.append((label, round(time.monotonic() - started, 2)))
        verdicts[label].append({c.variant.id: c.verdict for c in done})
    runs = len(cells) * args.rounds
    out = {
        "variants": len(cells),
        "rounds": args.rounds,
        "pool_s": round(times["pool"], 2),
        "dask_s": round(times["dask"], 2),
        "ratio": round(times["dask"] / times["pool"], 3),
        "overhead_per_variant_s": round((times["dask"] - times["pool"]) / runs, 2),
        "rounds_s": rounds,  # in the order run: a slow one names host contention, not a side
        "verdicts": verdicts,
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{len(cells)} variants x {args.rounds} rounds: pool {out['pool_s']:.1f} s, "
            f"dask local:{args.workers} {out['dask_s']:.1f} s, ratio {out['ratio']:.3f}, "
            f"{out['overhead_per_variant_s']:+.2f} s per variant"
        )
        print("rounds: " + ", ".join(f"{label} {s:.1f} s" for label, s in rounds))
        for label, v in verdicts.items():
            print(f"{label}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
