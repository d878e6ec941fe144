#!/usr/bin/env python3
"""The Dask executor's overhead: the same short variants on the local pool and on
``--dask local:2``, in one run.

Prints both wall times, their ratio (dask / pool) and the overhead per
variant; every variant must get the same verdict both ways.  Run it with
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
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cells = gauntlet.plan(["steady"], EEVDF, args.presets.split(","), None)
    times, verdicts = {}, {}
    for label, executor in (
        ("pool", None),
        ("dask", DaskExecutor(f"local:{args.workers}")),
    ):
        started = time.monotonic()
        done = gauntlet.run(
            cells,
            EEVDF,
            args.duration,
            None,
            None,
            lambda *a: None,
            gauntlet.default_budget(jobs=args.workers),
            executor=executor,
        )
        times[label] = round(time.monotonic() - started, 2)
        verdicts[label] = {c.variant.id: c.verdict for c in done}
    out = {
        "variants": len(cells),
        "pool_s": times["pool"],
        "dask_s": times["dask"],
        "ratio": round(times["dask"] / times["pool"], 3),
        "overhead_per_variant_s": round((times["dask"] - times["pool"]) / len(cells), 2),
        "same_verdicts": verdicts["pool"] == verdicts["dask"],
        "verdicts": verdicts,
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{len(cells)} variants: pool {times['pool']:.1f} s, dask local:{args.workers} "
            f"{times['dask']:.1f} s, ratio {out['ratio']:.3f}, "
            f"{out['overhead_per_variant_s']:+.2f} s per variant"
        )
        for label, v in verdicts.items():
            print(f"{label}: {v}")
    return 0 if out["same_verdicts"] else 1


if __name__ == "__main__":
    sys.exit(main())
