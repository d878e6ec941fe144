"""The one builder: a finished VM's messages and files -> a RunRecord.

Everything the guest said arrives as wire messages; this module sorts
them into the record's fields, adds what only the host knows (kernel,
QEMU, accelerator, calibration on the host, QEMU's disk counters), and
writes the scheduler's output beside the record.  It judges nothing.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ktstr import __version__, wire
from ktstr.checks.model import Verdict
from ktstr.record.disks import disk_records
from ktstr.record.payloads import payload_records
from ktstr.record.schema import MAX_CONSOLE_LINES, SCHEMA, Channel, RunRecord
from ktstr.results import store
from ktstr.results.metrics import step_metrics
from ktstr.scenario.model import Scenario
from ktstr.topology import Topology
from ktstr.vm.boot import timings
from ktstr.vm.lifecycle import VmResult, tail_lines
from ktstr.vm.qemu import qemu_version

# At most this much of the console's end is read: 5000 lines of a flooding kernel.
MAX_CONSOLE_BYTES = 4 << 20
MAX_REASONS = 20
_TOPOLOGY_FIELDS = ("cpus", "numa_nodes", "llcs", "smt_siblings", "numa_distances")


def host_calibration() -> float:
    """The guest's calibration loop, on the host (best of three)."""
    return min(wire.calibrate() for _ in range(3))


def skipped(scenario: Scenario, topology: Topology, reason: str) -> RunRecord:
    """The record of a scenario that cannot run on this topology."""
    return {
        "schema": SCHEMA,
        "scenario": scenario.name,
        "topology": topology.name,
        "skipped": f"{scenario.name} {reason}",
    }


def with_verdict(record: RunRecord, verdict: Verdict) -> RunRecord:
    """The record with its verdict and findings (replacing any earlier judgement)."""
    record["verdict"] = verdict.status
    record["findings"] = [f.as_dict() for f in verdict.findings]
    per_step = step_metrics(record)
    if per_step:
        record["steps"] = per_step
    return record


def _by_kind(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        out.setdefault(m["kind"], []).append(
            {k: v for k, v in m.items() if k not in ("v", "kind", "t")}
        )
    return out


def _channel(result: VmResult) -> Channel:
    return {
        "bad_lines": result.bad_line_count,
        "rejected": result.rejected_count,
        "reasons": [*result.bad_lines, *result.rejected][:MAX_REASONS],
        "flooded": result.flooded,
    }


def write_scheduler_logs(sched: dict[str, Any], run_dir: Path) -> None:
    """The scheduler's whole output, and its sched_ext debug dump when it printed one."""
    lines = [o["line"] for o in sched.get("output", [])]
    if not lines:
        return
    (run_dir / "scheduler.log").write_text("\n".join(lines) + "\n")
    start = next((i for i, ln in enumerate(lines) if "DEBUG DUMP" in ln), None)
    if start is not None:
        end = next(
            (i for i in range(start, len(lines)) if lines[i].startswith("EXIT:")), len(lines)
        )
        (run_dir / "sched-debug-dump.txt").write_text("\n".join(lines[start : end + 1]) + "\n")
        sched["debug_dump"] = str(run_dir / "sched-debug-dump.txt")


def build(
    scenario: Scenario,
    topology: Topology,
    plan: dict[str, Any],
    result: VmResult,
    kernel: Any,
    accel: Any,
    duration: float,
    disks: list | None = None,
) -> RunRecord:
    """The record of one finished run (``kernel``: KernelInfo, ``accel``: the chosen Accel)."""
    by_kind = _by_kind(result.messages)

    def first(kind: str) -> dict[str, Any]:
        return (by_kind.get(kind) or [{}])[0]

    calib = first(wire.CALIBRATION)
    host_loop = host_calibration()
    workers = sorted(by_kind.get(wire.WORKER, []), key=lambda w: w["id"])
    timeline = by_kind.get(wire.SAMPLE, [])
    steal = [sum(s.get("steal", {}).values()) for s in timeline]
    record: RunRecord = {
        "schema": SCHEMA,
        "ktstr_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenario": scenario.name,
        "description": scenario.description,
        "topology": topology.name,
        "duration_s": duration,
        "plan": plan,
        "observed_topology": {k: first(wire.TOPOLOGY).get(k) for k in _TOPOLOGY_FIELDS},
        "kernel": {
            "release": kernel.release,
            "path": kernel.boot_path,
            "cmdline": first(wire.HELLO).get("cmdline"),
        },
        "qemu_version": qemu_version(topology, accel.name),
        "accel": {"name": accel.name, "reason": accel.reason},
        "host": platform.node(),
        "git": store.project_git(),
        "calibration": {
            "guest_loop_s": calib.get("loop_s"),
            "host_loop_s": host_loop,
            "dilation": round(calib["loop_s"] / host_loop, 2) if calib.get("loop_s") else None,
            "steal_ticks": (steal[-1] - steal[0]) if len(steal) > 1 else 0,
        },
        "workers": workers,
        "events": by_kind.get(wire.EVENT, []),
        "timeline": timeline,
        "sched_ext": first(wire.SCHED_EXT),
        "console": tail_lines(result.console_path, MAX_CONSOLE_LINES, MAX_CONSOLE_BYTES),
        "vm_end": result.end,
        "timings_s": timings(result),
        "thresholds": dict(scenario.checks.thresholds),
        "checks_enabled": {  # every on/off switch of Checks
            k: v for k, v in asdict(scenario.checks).items() if isinstance(v, bool)
        },
        "kernel_allow": list(scenario.checks.kernel_allow),
        "channel": _channel(result),
    }
    wait = result.host_wait
    if wait is not None and wait.wait_share is not None:
        record["emulator"] = {
            "run_s": round(wait.run_s, 3),
            "wait_s": round(wait.wait_s, 3),
            "wait_share": round(wait.wait_share, 4),
        }
    if disks:
        record["disks"] = disk_records(
            disks,
            first(wire.DISKS).get("disks", []),
            first(wire.DISK_STATS).get("disks", []),
            result.blockstats,
            workers,
        )
    sched = plan.get("scheduler")
    record["scheduler"] = {
        "name": sched["name"] if sched else "eevdf",
        "binary": sched["host_binary"] if sched else None,
        "args": sched["args"] if sched else [],
        "profile": plan.get("profile"),
        "events": by_kind.get(wire.SCHED, []),
        "output": by_kind.get(wire.SCHED_OUTPUT, [])[-MAX_CONSOLE_LINES:],
        "kmsg": by_kind.get(wire.KMSG, [])[-MAX_CONSOLE_LINES:],
    }
    write_scheduler_logs(record["scheduler"], result.run_dir)
    if plan.get("payloads"):
        record["payloads"] = payload_records(plan, result.messages, result.run_dir)
    end = first(wire.SCENARIO_END)
    if end.get("skipped"):
        record["workload_skipped"] = end["skipped"]
    return record
