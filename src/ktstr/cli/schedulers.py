"""``ktstr schedulers build|list``: the kernel's example sched_ext schedulers."""

from __future__ import annotations

import argparse
import json

from ktstr.results.terminal import table


def cmd_schedulers_build(args: argparse.Namespace) -> int:
    from ktstr import testscheds
    from ktstr.kernel import store

    info = store.resolve(args.kernel)
    compilers = args.compiler.split(",") if args.compiler else None
    for directory in testscheds.build(info, compilers, args.force):
        names = ", ".join(sorted(p.name for p in directory.iterdir()))
        print(f"{directory}: {names}")
    return 0


def cmd_schedulers_list(args: argparse.Namespace) -> int:
    from ktstr import testscheds

    rows = testscheds.listing()
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no test schedulers built yet; run 'ktstr schedulers build'")
    else:
        keys = ("name", "release", "compiler", "built", "path")
        print("\n".join(table([keys] + [tuple(r[k] for k in keys) for r in rows])))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    scheds = sub.add_parser("schedulers", help="build and list the kernel's example schedulers")
    ssub = scheds.add_subparsers(dest="schedulers_command", metavar="ACTION", required=True)
    sbuild = ssub.add_parser(
        "build",
        help="build tools/sched_ext from the kernel's Debian source package",
        description="Download Debian's linux-source matching the kernel, build scx_simple, "
        "scx_qmap, scx_central, ... with each installed clang (19, 22) into the cache.",
    )
    sbuild.add_argument("--kernel", "-k", default=None, help="kernel (default: as for runs)")
    sbuild.add_argument("--compiler", default=None, help="e.g. 19,22 (default: every one found)")
    sbuild.add_argument("--force", action="store_true", help="rebuild even if cached")
    sbuild.set_defaults(func=cmd_schedulers_build)
    slist = ssub.add_parser("list", help="list built test schedulers")
    slist.add_argument("--json", action="store_true")
    slist.set_defaults(func=cmd_schedulers_list)
