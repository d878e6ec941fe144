"""The ``ktstr`` command.

Each submodule owns one group of subcommands and adds them with ``register``;
the order of the calls below is the order ``ktstr --help`` lists them in.
Subcommands import what they need when they run, so --help and quick
commands do not pay for ELF parsing and compression libraries.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from ktstr import __version__, paths
from ktstr.cli import (
    doctor,
    dumps,
    gauntlet,
    kernels,
    qemus,
    results,
    runs,
    schedulers,
    verifier,
    vms,
    worker,
)
from ktstr.cli.common import ACCEL_CHOICES
from ktstr.cli.kernels import FLAVOURS
from ktstr.errors import EnvironmentProblem, KtstrError

__all__ = ["ACCEL_CHOICES", "FLAVOURS", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ktstr",
        description="Test Linux process schedulers (sched_ext and EEVDF) in QEMU VMs whose "
        "CPU topology is declared in code.",
        epilog="Caches live under $KTSTR_CACHE_DIR (default ~/.cache/ktstr); run output under "
        "$KTSTR_RUNS_DIR (default ./runs).",
    )
    top.add_argument("--version", action="version", version=f"ktstr {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="debug output")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (
        kernels,
        qemus,
        vms,
        runs,
        schedulers,
        verifier,
        gauntlet,
        worker,
        results,
        dumps,
        doctor,
    ):
        group.register(sub)
    return top


def _unwritable(err: OSError) -> KtstrError | None:
    """A path ktstr must write that the user's setup forbids, as one sentence; else None.

    Permission and read-only errors are the user's to fix wherever they
    happen (cache, runs directory, --json FILE): no traceback for them.
    """
    if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not err.filename:
        return None
    path = os.path.abspath(err.filename)
    for root, variable in (
        (paths.cache_dir(), "KTSTR_CACHE_DIR"),
        (paths.runs_dir(), "KTSTR_RUNS_DIR"),
    ):
        root = os.path.abspath(root)
        if path == root or path.startswith(root + os.sep):
            return EnvironmentProblem(
                f"cannot access {path} ({err.strerror})",
                f"make {root} writable by this user, or set {variable} to a writable directory",
            )
    return EnvironmentProblem(
        f"cannot access {path} ({err.strerror})", "choose a path this user may write"
    )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)  # option types raise ConfigError: one sentence
    except KtstrError as err:
        print(f"ktstr: error: {err}", file=sys.stderr)
        return err.exit_code
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="ktstr: %(message)s"
    )
    try:
        return args.func(args)
    except KtstrError as err:
        print(f"ktstr: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # e.g. piped into head: not an error (before OSError, its base)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        problem = _unwritable(err)
        if problem is None:
            raise
        print(f"ktstr: error: {problem}", file=sys.stderr)
        return problem.exit_code
    except KeyboardInterrupt:
        print("ktstr: interrupted; the VM was shut down", file=sys.stderr)
        return 130
