"""kernel_health: the kernel console says nothing alarming (panic, oops, BUG, WARNING,
RCU stall, soft lockup, hung task, general protection fault).

The patterns are data: ``KERNEL_DENY`` names each alarm, ``KERNEL_ALLOW`` lists lines
known to be harmless everywhere, and a test allows its own known lines with
``Checks(kernel_allow=[regex, ...])`` (stored in the record as ``kernel_allow``).

Reads: ``console``, ``kernel_allow``, ``workers[].pid`` (to name a hung worker).
"""

from __future__ import annotations

import re

from ktstr.checks.model import FAIL, PASS, Finding
from ktstr.checks.workers import label

# (kind, regex): the first console line matching each kind is a finding.
KERNEL_DENY: list[tuple[str, str]] = [
    ("panic", r"Kernel panic - not syncing"),
    ("oops", r"\bOops:"),
    ("bug", r"\bBUG: |kernel BUG at"),
    ("warning", r"WARNING: CPU: \d+ PID: \d+|------------\[ cut here \]------------"),
    ("rcu_stall", r"rcu: INFO: .*detected stalls?|self-detected stall"),
    ("soft_lockup", r"soft lockup - CPU#"),
    ("hung_task", r"INFO: task .+ blocked for more than \d+ seconds"),
    ("gpf", r"general protection fault"),
]
# Lines that match a deny pattern but are known to be harmless on every run.
KERNEL_ALLOW: list[str] = []
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")
_TASK = re.compile(r"\btask \S+:(\d+)\b")  # "INFO: task python3:107 blocked ..."


def kernel_health(record: dict, th: dict) -> list[Finding]:
    out, seen = [], set()
    pids = {w["pid"]: w["id"] for w in record.get("workers", []) if w.get("pid")}
    allow = [re.compile(a) for a in KERNEL_ALLOW + list(record.get("kernel_allow") or [])]
    for line in record.get("console", []):
        for kind, pattern in KERNEL_DENY:
            if kind in seen or not re.search(pattern, line):
                continue
            if any(a.search(line) for a in allow):
                continue
            seen.add(kind)
            stamp = _STAMP.match(line)
            task = _TASK.search(line)
            worker = pids.get(int(task.group(1))) if task else None
            whose = f" ({label(record, worker)})" if worker is not None else ""
            out.append(
                Finding(
                    "kernel_health",
                    FAIL,
                    kind,
                    f"kernel {kind}: {line.strip()}{whose}",
                    worker=worker,
                    at_s=float(stamp.group(1)) if stamp else None,
                )
            )
    if not out:
        allowed = sum(1 for ln in record.get("console", []) if any(a.search(ln) for a in allow))
        out.append(
            Finding(
                "kernel_health",
                PASS,
                "ok",
                f"{len(record.get('console', []))} console lines, none alarming"
                + (f" ({allowed} allowed by kernel_allow)" if allowed else ""),
            )
        )
    return out
