"""``ktstr vm probe`` and ``ktstr shell``: boot a topology without a scenario."""

from __future__ import annotations

import argparse
import json
import sys

from ktstr import paths
from ktstr.cli.common import vm_options
from ktstr.topology import Topology


def cmd_vm_probe(args: argparse.Namespace) -> int:
    from ktstr.probe import render, run_probe

    topology = Topology.parse(args.topology, args.memory)
    result = run_probe(topology, args.kernel, args.accel, args.timeout, disks=args.disk)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(render(result))
    return 0 if result.match else 1


def cmd_shell(args: argparse.Namespace) -> int:
    from ktstr.kernel import store
    from ktstr.vm import accel as accel_mod
    from ktstr.vm.boot import boot

    topology = Topology.parse(args.topology, args.memory)
    info = store.resolve(args.kernel)
    chosen = accel_mod.choose(args.accel, info.boot_path)
    print(f"{chosen.line()}; kernel {info.release}; topology {topology.name}", file=sys.stderr)
    run_dir = paths.new_run_dir(f"shell-{topology.name}")
    for i, disk in enumerate(args.disk):
        print(f"disk {i}: {disk.describe(i)}", file=sys.stderr)
    boot(
        topology,
        info,
        chosen,
        run_dir,
        {"mode": "shell"},
        timeout_s=args.timeout,
        interactive=True,
        disks=args.disk,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    vm = sub.add_parser("vm", help="boot VMs")
    vsub = vm.add_subparsers(dest="vm_command", metavar="ACTION", required=True)
    probe = vsub.add_parser(
        "probe",
        help="boot a topology and compare what the guest sees",
        description="Boot the topology, print requested vs guest-observed "
        "layout side by side; exit 1 on any difference.",
    )
    vm_options(probe)
    probe.add_argument("--json", action="store_true", help="print one JSON object")
    probe.set_defaults(func=cmd_vm_probe)

    shell = sub.add_parser(
        "shell",
        help="interactive shell in a VM, for debugging",
        description="Boot the topology and open a busybox shell on the "
        "console; exiting the shell powers the VM off.",
    )
    vm_options(shell, timeout=24 * 3600)
    shell.set_defaults(func=cmd_shell)
