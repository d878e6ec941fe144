"""Options, exit codes and output that more than one group of subcommands shares."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ktstr.disk import DISK_OPTION_HELP, Disk, parse_disk_option
from ktstr.errors import ConfigError, KtstrError

ACCEL_CHOICES = ("auto", "kvm", "tcg")
EXIT_FOR_VERDICT = {"pass": 0, "skip": 0, "fail": 1, "inconclusive": 2}


def print_run(record: dict, run_dir: str) -> None:
    from ktstr.results.terminal import bug_summary, run_summary

    summary = bug_summary(record) if record.get("verdict") == "fail" else None
    if summary:
        print(summary)
        print()
    text = run_summary(record, run_dir)
    dump = (record.get("monitor") or {}).get("dump")
    if dump:  # the host's view of the failure: where it is and how to read it, before the
        # run dir, which stays the last line (scripts take it from there)
        head, sep, tail = text.rpartition("\nrun dir: ")
        note = f"failure dump ({dump['trigger']['reason']}): 'ktstr dump {run_dir}'"
        text = f"{head}\n{note}{sep}{tail}" if sep else f"{text}\n{note}"
    print(text)


def positive(option: str, kind: type = float, example: str = "12") -> Callable[[str], float]:
    """An argparse ``type`` that accepts only a finite number above 0.

    It raises ConfigError, which argparse does not catch, so the CLI prints
    one sentence (cause and fix) instead of a usage block; a negative, NaN or
    infinite duration would otherwise fail deep in a run.
    """

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            what = "whole number" if kind is int else "number"
            raise ConfigError(
                f"{option} {text!r} is not a finite {what} above 0", f"give e.g. {option} {example}"
            )
        return value

    return parse


def disk_arg(text: str) -> Disk:
    try:
        return parse_disk_option(text)
    except KtstrError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def disk_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--disk",
        action="append",
        type=disk_arg,
        default=[],
        metavar="SPEC",
        help=DISK_OPTION_HELP + "; replaces a scenario's own disks",
    )


def include_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="a host file or directory the guest gets as /include-files/<name>; repeatable",
    )


def monitor_options(p: argparse.ArgumentParser) -> None:
    from ktstr.monitor.settings import parse_period

    p.add_argument(
        "--monitor-period",
        type=parse_period,
        default=None,
        metavar="S",
        help="read the guest kernel's scheduler state from the host every S seconds "
        "(0 turns it off; default 0.1 when the kernel's debug info is cached, else off; "
        "given, it fetches missing debug info first)",
    )
    p.add_argument(
        "--monitor-enforce",
        action="store_true",
        help="let the monitor checks fail the run (by default they only report)",
    )


def monitor_from_args(args: argparse.Namespace):
    """The run's monitor settings from ``--monitor-period`` and ``--monitor-enforce``."""
    from ktstr.monitor.settings import MonitorSettings

    return MonitorSettings(args.monitor_period, args.monitor_enforce)


def vm_options(p: argparse.ArgumentParser, timeout: float | None = None) -> None:
    disk_option(p)
    p.add_argument(
        "--topology",
        "-t",
        default="1n2l2c1t",
        help="CPU topology as <N>n<L>l<C>c<T>t: NUMA nodes, LLCs, cores per LLC, "
        "threads per core (default: %(default)s)",
    )
    p.add_argument(
        "--memory",
        type=positive("--memory", int, "1024"),
        default=None,
        metavar="MIB",
        help="guest RAM in MiB (default: 512 + 16 per vCPU)",
    )
    p.add_argument(
        "--kernel",
        "-k",
        default=None,
        help="bzImage/vmlinux path, kernel build tree, or cached release "
        "(default: $KTSTR_KERNEL, else the newest cached kernel with sched_ext)",
    )
    p.add_argument(
        "--accel",
        choices=ACCEL_CHOICES,
        default=None,
        help="accelerator (default: $KTSTR_ACCEL, else auto: KVM only if it really "
        "works here, else TCG)",
    )
    p.add_argument(
        "--timeout",
        type=positive("--timeout", float, "300"),
        default=timeout,
        metavar="S",
        help="kill the VM after S seconds (default: scaled to the topology)",
    )
