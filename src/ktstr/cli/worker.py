"""``ktstr worker``: lend this host to a distributed gauntlet."""

from __future__ import annotations

import argparse

from ktstr.cli.common import positive

TLS_PARTS = (
    ("ca", "the CA certificate that signed every side's certificate"),
    ("cert", "this side's certificate (PEM)"),
    ("key", "its private key, unless the certificate file holds it"),
)


def tls_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """``PREFIX-ca``, ``PREFIX-cert``, ``PREFIX-key``: Dask's TLS, for untrusted networks."""
    for part, what in TLS_PARTS:
        p.add_argument(
            f"{prefix}-{part}",
            default=None,
            metavar="FILE",
            help=f"{what}, for a tls:// scheduler (docs/distributed.md, Security)",
        )


def cmd_worker(args: argparse.Namespace) -> int:
    from ktstr.distributed.security import tls_from
    from ktstr.distributed.worker import serve

    tls = tls_from(args.address, args.tls_ca, args.tls_cert, args.tls_key, "--tls")
    return serve(args.address, args.nthreads, args.name, tls)


def register(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser(
        "worker",
        help="run variants of a distributed gauntlet ('ktstr gauntlet --dask') on this host",
        description="Join a Dask scheduler as a worker offering this host's CPUs (vcpus), "
        "memory (mem_mib) and KVM (kvm 0/1); variants run with this host's kernels, QEMU and "
        "schedulers, within its VM slots (KTSTR_VM_SLOTS). Needs ktstr[distributed].",
    )
    worker.add_argument("address", help="the scheduler, e.g. tcp://10.0.0.1:8786")
    worker.add_argument(
        "--nthreads",
        type=positive("--nthreads", int, "4"),
        default=None,
        help="variants at once, at most (default: the host's CPU count)",
    )
    worker.add_argument("--name", default=None, help="this worker's name (default: its address)")
    tls_options(worker, "--tls")
    worker.set_defaults(func=cmd_worker)
