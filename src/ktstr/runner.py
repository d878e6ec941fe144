"""One scenario, end to end: compile, boot, collect, judge -> a RunRecord on disk."""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from dataclasses import asdict
from pathlib import Path

from ktstr import __version__, paths, wire
from ktstr.budget import record_cost
from ktstr.checks import judge
from ktstr.checks.model import FAIL, PASS, Finding, Verdict
from ktstr.checks.scheduler import scheduler_health
from ktstr.disk import Disk
from ktstr.disk_evidence import disk_records
from ktstr.errors import ConfigError, KernelError, VmError
from ktstr.guest.scenario import calibrate
from ktstr.initramfs import elfdeps
from ktstr.kernel.store import resolve
from ktstr.results import store
from ktstr.scenario.model import Scenario
from ktstr.scenario.plan import compile_plan
from ktstr.scheduler import EEVDF, Scheduler
from ktstr.topology import Topology
from ktstr.vm import accel as accel_mod
from ktstr.vm import lifecycle
from ktstr.vm.boot import boot, check_end, default_timeout, timings
from ktstr.vm.qemu import qemu_version

log = logging.getLogger(__name__)
RECORD_SCHEMA = 1
MAX_CONSOLE_LINES = 5000


def _payload(msg: dict) -> dict:
    return {k: v for k, v in msg.items() if k not in ("v", "kind", "t")}


def host_calibration() -> float:
    """The guest's calibration loop, on the host (best of three)."""
    return min(calibrate() for _ in range(3))


GUEST_SCHED_DIR = "/ktstr/sched/bin"
ATTACH_TIMEOUT_S = 30.0


def pack_scheduler(
    scheduler: Scheduler, args: tuple[str, ...], release: str
) -> tuple[dict, dict[str, bytes]]:
    """The plan's scheduler entry and the files (binary + shared libraries) to pack."""
    binary = scheduler.resolve_binary(release)
    guest_path = f"{GUEST_SCHED_DIR}/{binary.name}"
    files = {guest_path: binary.read_bytes()}
    libs = elfdeps.closure([binary])
    for guest_lib, host_lib in libs.items():
        files[guest_lib] = Path(host_lib).read_bytes()
    spec = {
        "name": scheduler.name,
        "path": guest_path,
        "args": list(args),
        "ops": scheduler.expected_ops,
        "sysctls": dict(scheduler.sysctls),
        "attach_timeout_s": ATTACH_TIMEOUT_S,
        "ld_library_path": ":".join(sorted({str(Path(p).parent) for p in libs})),
        "host_binary": str(binary),
    }
    return spec, files


def write_scheduler_logs(sched: dict, run_dir: Path) -> None:
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


def build_record(
    scenario: Scenario,
    topology: Topology,
    plan: dict,
    result,
    kernel,
    accel,
    duration: float,
    disks: list | None = None,
) -> dict:
    msgs = result.messages
    by_kind: dict[str, list[dict]] = {}
    for m in msgs:
        by_kind.setdefault(m["kind"], []).append(_payload(m))
    calib = (by_kind.get(wire.CALIBRATION) or [{}])[0]
    host_loop = host_calibration()
    console = result.console_path.read_text(errors="replace").splitlines()[-MAX_CONSOLE_LINES:]
    topo_msg = (by_kind.get(wire.TOPOLOGY) or [{}])[0]
    record = {
        "schema": RECORD_SCHEMA,
        "ktstr_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenario": scenario.name,
        "description": scenario.description,
        "topology": topology.name,
        "duration_s": duration,
        "plan": plan,
        "observed_topology": {
            k: topo_msg.get(k)
            for k in ("cpus", "numa_nodes", "llcs", "smt_siblings", "numa_distances")
        },
        "kernel": {
            "release": kernel.release,
            "path": kernel.boot_path,
            "cmdline": (by_kind.get(wire.HELLO) or [{}])[0].get("cmdline"),
        },
        "qemu_version": qemu_version(),
        "accel": {"name": accel.name, "reason": accel.reason},
        "host": platform.node(),
        "git": store.project_git(),
        "calibration": {
            "guest_loop_s": calib.get("loop_s"),
            "host_loop_s": host_loop,
            "dilation": round(calib["loop_s"] / host_loop, 2) if calib.get("loop_s") else None,
        },
        "workers": sorted(by_kind.get(wire.WORKER, []), key=lambda w: w["id"]),
        "events": by_kind.get(wire.EVENT, []),
        "timeline": by_kind.get(wire.SAMPLE, []),
        "sched_ext": (by_kind.get(wire.SCHED_EXT) or [{}])[0],
        "console": console,
        "vm_end": result.end,
        "timings_s": timings(result),
        "thresholds": scenario.checks.thresholds,
        "checks_enabled": {  # every on/off switch of Checks
            k: v for k, v in asdict(scenario.checks).items() if isinstance(v, bool)
        },
    }
    if disks:
        record["disks"] = disk_records(
            disks,
            ((by_kind.get(wire.DISKS) or [{}])[0]).get("disks", []),
            ((by_kind.get(wire.DISK_STATS) or [{}])[0]).get("disks", []),
            result.blockstats,
            record["workers"],
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
    end = (by_kind.get(wire.SCENARIO_END) or [{}])[0]
    if end.get("skipped"):
        record["workload_skipped"] = end["skipped"]
    steal = [sum(s.get("steal", {}).values()) for s in record["timeline"]]
    record["calibration"]["steal_ticks"] = (steal[-1] - steal[0]) if len(steal) > 1 else 0
    return record


def judge_record(record: dict, overrides: dict[str, float] | None = None) -> Verdict:
    verdict = judge(record, overrides, record.get("checks_enabled"))
    extra = list(scheduler_health(record, {}))
    if record.get("workload_skipped") and not any(f.status == FAIL for f in extra):
        extra.append(Finding("scheduler", FAIL, "detached", record["workload_skipped"]))
    if record.get("vm_end") not in (None, lifecycle.POWEROFF):
        extra.append(
            Finding(
                "vm",
                FAIL,
                record["vm_end"],
                f"the VM ended by {record['vm_end']} before the scenario finished",
            )
        )
    findings = list(verdict.findings) + extra
    if record.get("workload_skipped"):  # no workload ran: only the scheduler's failure counts
        findings = [f for f in findings if f.check not in ("not_stuck", "fairness", "isolation")]
    return Verdict.of(apply_expectations(findings, record.get("plan", {}).get("expect", {})))


def apply_expectations(findings: list[Finding], expect: dict) -> list[Finding]:
    """``expect_error``: the run passes only if a scheduler failure matches the regex;
    ``expect_fail``: the run passes only if something failed."""
    pattern, expect_fail = expect.get("error"), expect.get("fail")
    if not pattern and not expect_fail:
        return findings
    failed = [f for f in findings if f.status == FAIL]
    if pattern:
        matched = [f for f in failed if f.check == "scheduler" and re.search(pattern, f.message)]
        if matched:
            kept = [f for f in findings if f not in matched and f.check != "vm"]
            seen = Finding(
                "expect", PASS, "expected_error", f"expected error seen: {matched[0].message}"
            )
            return kept + [seen]
        missing = Finding(
            "expect",
            FAIL,
            "expected_error_missing",
            f"no scheduler failure matched expect_error {pattern!r}",
        )
        return findings + [missing]
    if failed:
        seen = Finding(
            "expect", PASS, "expected_failure", f"failed as expected: {failed[0].message}"
        )
        return [seen] + [f for f in findings if f.status != FAIL]
    return findings + [
        Finding(
            "expect", FAIL, "expected_failure_missing", "expect_fail was set but the run passed"
        )
    ]


def validate_expect_error(pattern: str) -> str:
    """Refuse a regex that matches everything (it would pin nothing)."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ConfigError(
            f"expect_error {pattern!r} is not a valid regex: {err}", "fix the pattern"
        ) from None
    if compiled.search("") is not None:
        raise ConfigError(
            f"expect_error {pattern!r} matches any text",
            "give a pattern that names the expected error message",
        )
    return pattern


def apply_verdict(record: dict, verdict: Verdict) -> dict:
    record["verdict"] = verdict.status
    record["findings"] = [f.as_dict() for f in verdict.findings]
    return record


def save(record: dict, run_dir: Path) -> Path:
    """Write record.json (atomically) and index it in the result store."""
    path = run_dir / "record.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    store.index(record, run_dir)
    return path


def run_scenario(
    scenario: Scenario,
    topology: Topology,
    kernel: str | None = None,
    accel: str | None = None,
    duration_s: float | None = None,
    timeout_s: float | None = None,
    scheduler: Scheduler = EEVDF,
    profile: str | None = None,
    extra_args: tuple[str, ...] = (),
    expect: dict | None = None,
    disks: tuple[Disk, ...] | None = None,
) -> tuple[dict, Path]:
    """Boot, run, judge; the record is saved in the run directory and returned.

    ``disks`` replaces the scenario's own disks when given.
    """
    duration = float(duration_s or scenario.duration_s)
    run_dir = paths.new_run_dir(f"{scenario.name}-{topology.name}")
    reason = scenario.requires.reason(topology.layout())
    if reason:
        record = {
            "schema": RECORD_SCHEMA,
            "scenario": scenario.name,
            "topology": topology.name,
            "skipped": f"{scenario.name} {reason}",
        }
        apply_verdict(record, judge_record(record))
        save(record, run_dir)
        return record, run_dir
    disks = tuple(scenario.disks if disks is None else disks)
    plan = compile_plan(scenario, topology, duration, disks)
    info = resolve(kernel)
    files: dict[str, bytes] = {}
    if not scheduler.is_eevdf:
        if info.sched_ext is False:
            raise KernelError(
                f"kernel {info.release} lacks CONFIG_SCHED_CLASS_EXT, so {scheduler.name} "
                "cannot run on it",
                "use a sched_ext kernel ('ktstr kernel fetch')",
            )
        chosen_profile = scheduler.profile(profile)
        plan["profile"] = chosen_profile.name
        plan["scheduler"], files = pack_scheduler(
            scheduler, chosen_profile.args + tuple(extra_args), info.release
        )
    plan["expect"] = expect or {}
    chosen = accel_mod.choose(accel, info.boot_path)
    log.info("%s", chosen.line())
    timeout = timeout_s or (
        default_timeout(topology, chosen) + 2 * duration + 30 + plan["stop_grace_s"]
    )
    started = time.monotonic()
    done = boot(
        topology,
        info,
        chosen,
        run_dir,
        plan,
        timeout,
        strict=False,
        files=files,
        cmdline=list(scheduler.kernel_args),
        disks=disks,
    )
    result = done.result
    if result.end == lifecycle.QEMU_FAILED:
        check_end(result)
    error = result.first(wire.ERROR)
    if error and result.end != lifecycle.PANIC:
        (run_dir / "agent-traceback.txt").write_text(error.get("traceback", ""))
        raise VmError(
            f"the guest agent failed: {error.get('message')}",
            f"see {run_dir / 'agent-traceback.txt'}",
        )
    record_cost(topology.cpus, duration, time.monotonic() - started)
    record = build_record(scenario, topology, plan, result, info, chosen, duration, done.disks)
    apply_verdict(record, judge_record(record))
    save(record, run_dir)
    return record, run_dir


def load(run: str | Path) -> tuple[dict, Path]:
    """A stored record by run directory or record.json path."""
    path = Path(run)
    if path.is_dir():
        path = path / "record.json"
    if not path.is_file():
        raise ConfigError(f"no record at {path}", "pass a run directory made by 'ktstr run'")
    record = json.loads(path.read_text())
    if record.get("schema") != RECORD_SCHEMA:
        raise ConfigError(
            f"{path} has record schema {record.get('schema')!r}, this ktstr reads {RECORD_SCHEMA}",
            "re-run the scenario",
        )
    return record, path.parent
