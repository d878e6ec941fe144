"""``ktstr qemu fetch``: the newer QEMU big guests and multi-threaded TCG need."""

from __future__ import annotations

import argparse


def cmd_qemu_fetch(args: argparse.Namespace) -> int:
    from ktstr.errors import FetchError
    from ktstr.vm import qemu, qemu_fetch

    if not args.force:
        system = qemu.system_qemu()
        if system is not None and system.capable:
            print(
                f"not needed: the system {system.describe()} runs every guest ktstr builds; "
                "nothing fetched (--force fetches anyway)"
            )
            return 0
    try:
        fetched = qemu_fetch.fetch(args.suite, args.mirror, args.force)
    except FetchError as err:
        cached = None if args.force else qemu_fetch.newest_cached()
        if cached is None:
            raise
        # Offline, or the mirror is down: what is cached still runs.
        print(f"already cached: QEMU {cached.version} in {cached.root} (not checked: {err})")
        return 0
    state = "already cached" if fetched.cached else "fetched"
    print(f"{state}: QEMU {fetched.qemu.version} in {fetched.qemu.root}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ktstr.vm.qemu_fetch import SUITE

    group = sub.add_parser("qemu", help="fetch the newer QEMU that big guests need")
    qsub = group.add_subparsers(dest="qemu_command", metavar="ACTION", required=True)
    fetch = qsub.add_parser(
        "fetch",
        help="download QEMU 10 from Debian's backports into the cache",
        description="Download qemu-system-x86 with its firmware from Debian's "
        f"{SUITE}, verify each package against the apt index and unpack it "
        "into ktstr's cache; the machine's apt configuration is only read. "
        "With KTSTR_QEMU=auto (the default) ktstr keeps using the system QEMU and "
        "starts the cached one only for what the system one cannot do: guests whose "
        "APIC IDs pass 255 under TCG (the max-cpu preset) and multi-threaded TCG "
        "(KTSTR_TCG_THREAD=multi). Idempotent: a cached build is not fetched again, "
        "and nothing is fetched when the system QEMU is new enough.",
    )
    fetch.add_argument(
        "--suite", default=SUITE, help="Debian suite to take it from (default: %(default)s)"
    )
    fetch.add_argument(
        "--mirror",
        default=None,
        help="Debian archive URL (default: $KTSTR_MIRROR, else the one this machine's apt uses)",
    )
    fetch.add_argument(
        "--force", action="store_true", help="fetch again even if cached or not needed"
    )
    fetch.set_defaults(func=cmd_qemu_fetch)
