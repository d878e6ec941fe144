"""``ktstr dump``: print a run's failure dump readably."""

from __future__ import annotations

import argparse


def cmd_dump(args: argparse.Namespace) -> int:
    from ktstr.results.dump_text import load, render

    print(render(load(args.run)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    dump = sub.add_parser(
        "dump",
        help="print a run's failure dump (the scheduler's state read from the host)",
        description="Print <run dir>/failure-dump.json: what triggered it, each CPU's state, "
        "the tasks waiting on each dispatch queue, the scheduler's BPF maps and its exit.",
    )
    dump.add_argument("run", help="run directory (or its failure-dump.json)")
    dump.set_defaults(func=cmd_dump)
