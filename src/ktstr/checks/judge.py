"""The one verdict path: every check in one list, then the test's expectations.

``judge`` is what a run, ``ktstr check`` and every re-judgement call: a stored
record judged again with the same thresholds gets the same verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ktstr.checks import steps
from ktstr.checks.coverage import coverage
from ktstr.checks.disks import disk_errors, io_throughput
from ktstr.checks.expectations import apply_expectations
from ktstr.checks.fairness import fairness
from ktstr.checks.imbalance import imbalance
from ktstr.checks.integrity import (
    bad_numbers,
    busy_host_note,
    channel,
    host_busy,
    uncalibrated,
    vm_end,
)
from ktstr.checks.isolation import isolation
from ktstr.checks.kernel_health import kernel_health
from ktstr.checks.limits import worker_limits
from ktstr.checks.model import SKIP, Finding, Verdict
from ktstr.checks.monitor import monitor
from ktstr.checks.not_stuck import not_stuck
from ktstr.checks.payloads import payloads
from ktstr.checks.scheduler import scheduler
from ktstr.checks.thresholds import merged, validate
from ktstr.checks.work_conservation import work_conservation


@dataclass(frozen=True)
class Check:
    """One check: its name, its function, and whether ``Checks(<name>=False)`` turns it off."""

    name: str
    run: Callable[[dict, dict], list[Finding]]
    switchable: bool = False
    judges_workload: bool = False  # meaningless when the guest never ran the workload


CHECKS: tuple[Check, ...] = (
    Check("calibration", uncalibrated),
    Check("channel", channel),
    Check("emulator", host_busy),
    Check("not_stuck", not_stuck, switchable=True, judges_workload=True),
    Check("fairness", fairness, switchable=True, judges_workload=True),
    Check("isolation", isolation, switchable=True, judges_workload=True),
    Check("work_conservation", work_conservation, switchable=True, judges_workload=True),
    Check("imbalance", imbalance, switchable=True, judges_workload=True),
    Check("kernel_health", kernel_health, switchable=True),
    Check("disk_errors", disk_errors, switchable=True),
    Check("scheduler", scheduler),
    Check("monitor", monitor),
    Check("coverage", coverage, judges_workload=True),
    Check("vm", vm_end),
    Check("worker_limits", worker_limits),
    Check("io_throughput", io_throughput),
    Check("payloads", payloads, judges_workload=True),
)
SWITCHABLE = tuple(c.name for c in CHECKS if c.switchable)


def judge(record: dict, overrides: dict[str, float] | None = None) -> Verdict:
    """Every enabled check over a record, then its expectations.

    ``overrides`` replace thresholds (``ktstr check --set``); the record's own
    ``thresholds`` (the scenario's) apply under them.
    """
    if record.get("skipped"):
        return Verdict.of([Finding("scenario", SKIP, "skipped", record["skipped"])])
    th = merged({**validate(record.get("thresholds") or {}), **(overrides or {})})
    enabled = record.get("checks_enabled") or {}
    findings = bad_numbers(record)
    if findings:  # judge the rest; the verdict stays inconclusive
        bad = {f.worker for f in findings}
        record = {**record, "workers": [w for w in record["workers"] if w["id"] not in bad]}
    workload_ran = not record.get("workload_skipped")
    for check in CHECKS:
        if check.switchable and not enabled.get(check.name, True):
            continue
        if check.judges_workload and not workload_ran:
            continue  # no workload ran: only the scheduler's failure counts
        findings += check.run(record, th)
    if workload_ran and enabled.get("fairness", True):
        findings += steps.per_step(record, th, {"fairness": fairness}, findings)
    findings = busy_host_note(record, th, steps.named(record, findings))
    return Verdict.of(apply_expectations(findings, (record.get("plan") or {}).get("expect", {})))
