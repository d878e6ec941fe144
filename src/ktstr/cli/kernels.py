"""``ktstr kernel fetch|list|info``: the kernels runs boot."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ktstr import paths
from ktstr.results.terminal import table

if TYPE_CHECKING:
    from ktstr.kernel.image import KernelInfo

FLAVOURS = ("cloud", "generic")


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _kernel_lines(info: KernelInfo) -> list[str]:
    return [
        f"release:    {info.release}",
        f"sched_ext:  {_yes(info.sched_ext)}",
        f"BTF:        {_yes(info.btf)}",
        f"SCHEDSTATS: {_yes(info.schedstats)}",
        f"boot:       {info.boot_method} ({info.boot_path})",
        f"size:       {info.size / 2**20:.1f} MiB",
        f"config:     {info.config_path or 'not found'}",
    ]


def cmd_kernel_fetch(args: argparse.Namespace) -> int:
    from ktstr.kernel import debian, store

    fetched = debian.fetch(args.flavour, args.suite, args.mirror, args.force)
    state = "already cached" if fetched.cached else "fetched"
    info = store.cached_info(fetched.entry)
    print(f"{state}: {fetched.release} in {fetched.entry} (sched_ext {_yes(info.sched_ext)})")
    if args.debug:
        from pathlib import Path

        from ktstr.kernel import debuginfo

        dbg = debuginfo.fetch(
            fetched.release, Path(info.boot_path), args.suite, args.mirror, args.force
        )
        if dbg.cached:
            print(f"debug info already cached: {dbg.path}")
        else:
            size = dbg.path.stat().st_size
            print(
                f"debug info fetched: {dbg.path} ({size / 2**20:.0f} MiB, from a "
                f"{dbg.download_bytes / 2**20:.0f} MiB download)"
            )
    return 0


def cmd_kernel_list(args: argparse.Namespace) -> int:
    from ktstr.kernel import store

    infos = [store.cached_info(d) for d in store.cached_dirs()]
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no kernels cached under {paths.kernels_dir()}; {store.FETCH_HINT}")
        return 0
    rows = [("release", "sched_ext", "BTF", "SCHEDSTATS", "boot", "size")]
    rows += [
        (
            i.release,
            _yes(i.sched_ext),
            _yes(i.btf),
            _yes(i.schedstats),
            i.boot_method,
            f"{i.size / 2**20:.1f} MiB",
        )
        for i in infos
    ]
    print("\n".join(table(rows)))
    return 0


def cmd_kernel_info(args: argparse.Namespace) -> int:
    from ktstr.kernel import store

    info = store.resolve(args.kernel)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print("\n".join(_kernel_lines(info)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    kernel = sub.add_parser("kernel", help="fetch, list and inspect kernels")
    ksub = kernel.add_subparsers(dest="kernel_command", metavar="ACTION", required=True)
    fetch = ksub.add_parser(
        "fetch",
        help="download Debian's sched_ext kernel into the cache",
        description="Download the kernel a Debian meta package points at "
        "(plus its modules), verify it against the apt index "
        "and unpack it, with an ELF vmlinux for direct boot.",
    )
    fetch.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="cloud",
        help="kernel flavour (default: %(default)s, the smallest)",
    )
    fetch.add_argument(
        "--suite",
        default="unstable",
        help="Debian suite (default: %(default)s, whose kernels have sched_ext)",
    )
    fetch.add_argument(
        "--mirror",
        default=None,
        help="Debian archive URL (default: $KTSTR_MIRROR, else the one this machine's apt uses)",
    )
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    fetch.add_argument(
        "--debug",
        action="store_true",
        help="also fetch the kernel's debug info (its -dbg package, a ~350 MB download; "
        "only the vmlinux debug file is kept), which the monitor needs",
    )
    fetch.set_defaults(func=cmd_kernel_fetch)
    klist = ksub.add_parser("list", help="list cached kernels")
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(func=cmd_kernel_list)
    kinfo = ksub.add_parser("info", help="show a kernel's release, sched_ext, BTF, boot method")
    kinfo.add_argument("kernel", help="cached release or path to a bzImage/vmlinux")
    kinfo.add_argument("--json", action="store_true")
    kinfo.set_defaults(func=cmd_kernel_info)
