"""``ktstr verifier``: the BPF verifier's figures for schedulers across kernels."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ktstr.cli.common import ACCEL_CHOICES


def _schedulers(refs: list[str] | None, release: str) -> list[Any]:
    from ktstr import testscheds, userfile

    if refs:
        return [userfile.scheduler(ref) for ref in refs]
    names = sorted({r["name"] for r in testscheds.listing() if r["release"] == release})
    if not names:
        from ktstr.errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"no scheduler given and none built for kernel {release}",
            "name one with --scheduler, or build the examples with 'ktstr schedulers build'",
        )
    return [userfile.scheduler(name) for name in names]


def _compare_kind(a: str, b: str, kernel: str | None) -> str:
    """Whether A and B name two scheduler binaries or two kernels, or one sentence."""
    from ktstr import userfile
    from ktstr.errors import ConfigError, KtstrError
    from ktstr.kernel.store import resolve

    def is_scheduler(ref: str, release: str) -> bool:
        try:
            userfile.scheduler(ref).resolve_binary(release)
        except KtstrError:
            return False
        return True

    def is_kernel(ref: str) -> bool:
        try:
            resolve(ref)
        except KtstrError:
            return False
        return True

    release = resolve(kernel).release
    if is_scheduler(a, release) and is_scheduler(b, release):
        return "scheduler"
    if is_kernel(a) and is_kernel(b):
        return "kernel"
    raise ConfigError(
        f"--compare {a} {b} names neither two scheduler binaries nor two kernels",
        "give two schedulers (names or paths) or two kernels (releases or paths)",
    )


def _compare(args: argparse.Namespace, topology: Any) -> int:
    from ktstr import userfile
    from ktstr.errors import ConfigError
    from ktstr.verifier import report, sweep

    a, b = args.compare
    kernel = args.kernel[0] if args.kernel else None
    kind = _compare_kind(a, b, kernel)
    if kind == "scheduler":
        scheds = [userfile.scheduler(a), userfile.scheduler(b)]
        sweep.check_cells(scheds, [kernel])
        cells = [sweep.run_cell(s, kernel, topology, args.accel) for s in scheds]
    else:
        if not args.scheduler or len(args.scheduler) != 1:
            raise ConfigError(
                "comparing two kernels needs exactly one scheduler",
                "add --scheduler NAME",
            )
        sched = userfile.scheduler(args.scheduler[0])
        sweep.check_cells([sched], [a, b])
        cells = [sweep.run_cell(sched, k, topology, args.accel) for k in (a, b)]
    if args.json:
        rows = report.compare_rows(cells[0], cells[1])
        print(json.dumps({"a": cells[0], "b": cells[1], "deltas": rows}, indent=1))
    else:
        print("\n".join(report.compare_lines(cells[0], cells[1], a, b)))
    return 0 if all(c["attached"] and c["dispatched"] for c in cells) else 1


def cmd_verifier(args: argparse.Namespace) -> int:
    from ktstr.topology import Topology
    from ktstr.verifier import report, sweep

    topologies = [Topology.parse(t) for t in (args.topology or [sweep.DEFAULT_TOPOLOGY])]
    if args.compare:
        return _compare(args, topologies[0])
    kernels: list[str | None] = list(args.kernel) if args.kernel else [None]
    first = sweep.check_kernel(kernels[0])
    schedulers = _schedulers(args.scheduler, first.release)
    sweep.check_cells(schedulers, kernels)
    cells = [
        sweep.run_cell(s, k, t, args.accel) for s in schedulers for k in kernels for t in topologies
    ]
    if args.json:
        print(json.dumps({"cells": cells}, indent=1))
    else:
        print("\n".join(report.sweep_lines(cells)))
    return 0 if all(c["attached"] and c["dispatched"] for c in cells) else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verifier",
        help="load schedulers in VMs and show the BPF verifier's figures per program",
        description="For each scheduler x kernel x topology: boot a VM, load the scheduler, "
        "check it attaches and dispatches (a short 'steady'), and show per BPF program the "
        "verified instructions, states, peak states and verification time against the "
        "complexity limit (1,000,000; '!' at 80%%). A rejected scheduler shows the verifier's "
        "first error, the instruction before it and its log with loops collapsed. Exit 0 when "
        "every cell attached and dispatched, 1 otherwise, 2 on bad input.",
    )
    p.add_argument(
        "--scheduler",
        "-s",
        action="append",
        help="a scheduler name, path or FILE.py::NAME; repeatable (default: every built "
        "test scheduler)",
    )
    p.add_argument(
        "--kernel",
        "-k",
        action="append",
        help="a kernel (release, path or build tree); repeatable (default: as for runs)",
    )
    p.add_argument(
        "--topology",
        "-t",
        action="append",
        help="a topology; repeatable (default: 1n1l2c1t)",
    )
    p.add_argument("--json", action="store_true", help="print the cells as JSON (for CI)")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="two scheduler binaries (on the first --kernel) or two kernels (with one "
        "--scheduler): per-program deltas, B minus A",
    )
    p.add_argument("--accel", choices=ACCEL_CHOICES, default=None, help="accelerator")
    p.set_defaults(func=cmd_verifier)
