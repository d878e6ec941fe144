"""``ktstr vm probe`` and ``ktstr shell``: boot a topology without a scenario."""

from __future__ import annotations

import argparse
import json

from ktstr.cli.common import include_option, positive, vm_options
from ktstr.errors import ConfigError
from ktstr.scheduler import EEVDF
from ktstr.topology import Topology, as_topology


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
    from ktstr import userfile
    from ktstr.initramfs.include import check
    from ktstr.shell import ShellRequest, run_shell

    if args.exec_timeout is not None and args.exec is None:
        raise ConfigError("--exec-timeout bounds a command", "give the command with --exec CMD")
    test = _declared_test(args.test) if args.test else {}
    scheduler = userfile.scheduler(args.scheduler) if args.scheduler else test.get("scheduler")
    scheduler = scheduler or EEVDF
    topology = args.topology or test.get("topology") or scheduler.topology or "1n2l2c1t"
    include = [*test.get("include_files", ()), *args.include]
    check([*include, *scheduler.config_files()])  # refuse before resolving any kernel
    return run_shell(
        ShellRequest(
            Topology.parse(str(as_topology(topology).name), args.memory),
            args.kernel,
            args.accel,
            args.timeout,
            tuple(args.disk) or tuple(test.get("disks", ())),
            include,
            scheduler,
            args.flags,
            tuple(args.sched_arg),
            args.exec,
            args.exec_timeout,
            args.dmesg,
        )
    )


def _declared_test(ref: str) -> dict:
    """What ``--test FILE::NAME`` gives a shell: a Scenario's files and disks, or a
    ``@ktstr_test``'s topology, scheduler, files and disks."""
    from ktstr import userfile
    from ktstr.scenario.model import Scenario

    found = userfile.scenario_or_test(ref)
    if isinstance(found, Scenario):
        return {"include_files": found.include_files, "disks": found.disks}
    declared = dict(found.ktstr)  # type: ignore[attr-defined]
    if declared.get("scheduler") is EEVDF:
        declared.pop("scheduler")
    return declared


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
        "console; exiting the shell powers the VM off. With --exec, run one command "
        "instead and exit with its exit code.",
    )
    vm_options(shell, timeout=24 * 3600)
    include_option(shell)
    shell.add_argument(
        "--exec",
        default=None,
        metavar="CMD",
        help="run CMD with the guest's sh, print its output, exit with its exit code "
        "(128+N for signal N) instead of opening a shell",
    )
    shell.add_argument(
        "--exec-timeout",
        type=positive("--exec-timeout", float, "60"),
        default=None,
        metavar="S",
        help="kill the command after S seconds and power the VM off (exit 2)",
    )
    shell.add_argument(
        "--dmesg",
        action="store_true",
        help="kernel messages on the console (loglevel 7); with --exec, copied to stderr",
    )
    shell.add_argument(
        "--test",
        default=None,
        metavar="FILE.py::NAME",
        help="take a Scenario's include files and disks, or a @ktstr_test's topology, "
        "scheduler, include files and disks; options given here win",
    )
    shell.add_argument(
        "--scheduler",
        "-s",
        default=None,
        help="start this sched_ext scheduler before the shell, as for 'ktstr run'",
    )
    shell.add_argument("--flags", default=None, help="the scheduler's flag profile, e.g. a,b")
    shell.add_argument(
        "--sched-arg", action="append", default=[], metavar="ARG", help="as for 'ktstr run'"
    )
    shell.set_defaults(func=cmd_shell, topology=None)  # None: --test's, else 1n2l2c1t
    for action in shell._actions:
        if action.dest == "topology":
            action.help = action.help.replace("%(default)s", "--test's, else 1n2l2c1t")
