"""The verifier sweep: one VM per scheduler × kernel × topology cell.

Each cell runs the ``steady`` scenario for a few seconds under the
scheduler, loaded under the statistics library, so one boot answers three
questions: did it load (and if not, why), did it attach, did it dispatch
(workers in the sched_ext class made progress), and what did the verifier
count for each program it holds.
"""

from __future__ import annotations

import errno as errno_names
from pathlib import Path
from typing import Any

from ktstr.errors import ConfigError, KernelError
from ktstr.kernel.image import KernelInfo
from ktstr.kernel.store import resolve
from ktstr.scheduler import Scheduler
from ktstr.topology import Topology
from ktstr.verifier import log as vlog

SCENARIO = "steady"
DURATION_S = 3.0
DEFAULT_TOPOLOGY = "1n1l2c1t"
# Program type numbers (enum bpf_prog_type) a scheduler holds, for the table.
PROG_TYPES = {26: "tracing", 27: "struct_ops", 28: "ext", 29: "lsm", 31: "syscall"}


def check_kernel(ref: str | None) -> KernelInfo:
    """The kernel of a cell, or one sentence saying what it lacks for a scheduler."""
    info = resolve(ref)
    if info.sched_ext is False:
        raise KernelError(
            f"kernel {info.release} lacks CONFIG_SCHED_CLASS_EXT, so no scheduler can load on it",
            "give a sched_ext kernel with --kernel ('ktstr kernel list' shows which are)",
        )
    if info.btf is False:
        raise KernelError(
            f"kernel {info.release} has no BTF, which sched_ext schedulers need to load",
            "give a kernel built with CONFIG_DEBUG_INFO_BTF",
        )
    return info


def programs(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The programs the attached scheduler held, each with the verifier's figures.

    A program is matched to its load by id and named by its BTF function (the
    kernel's own name is cut at 15 characters); the load's log gives states, peak
    states, time and stack depth, the kernel's own count the verified
    instructions (``verified_insns``), and the limit comes from the log too.
    """
    live = {p["id"]: p for p in message.get("live", [])}
    out = []
    for load in message.get("loads", []):
        if load.get("fd", -1) < 0 or load.get("id") not in live:
            continue
        st = vlog.stats(load.get("log", ""))
        insns = load.get("verified_insns") or live[load["id"]].get("insns") or st.processed
        limit = st.limit or vlog.LIMIT
        out.append(
            {
                "name": load.get("func") or load.get("name", ""),
                "type": PROG_TYPES.get(load.get("type", -1), str(load.get("type"))),
                "verified_insns": insns,
                "states": st.total_states,
                "peak_states": st.peak_states,
                "max_states_per_insn": st.max_states_per_insn,
                "time_us": st.time_us,
                "stack_depth": st.stack_depth,
                "limit": limit,
                "fraction": round(insns / limit, 4) if insns is not None else None,
                "warning": insns is not None and insns >= vlog.WARN_FRACTION * limit,
            }
        )
    return sorted(out, key=lambda p: p["name"])


def rejection(message: dict[str, Any]) -> dict[str, Any] | None:
    """The program the verifier refused, with its first error and the collapsed log."""
    failed = [
        load
        for load in message.get("loads", [])
        if load.get("fd", 0) < 0 and load.get("name") and not load["name"].startswith("libbpf_")
    ]
    if not failed:
        return None
    # libbpf retries a failed load with a full log: the last attempt says the most.
    load = failed[-1]
    text = load.get("log", "")
    why = vlog.rejection(text, load.get("errno", 0))
    return {
        "program": load.get("func") or load["name"],
        "errno": load.get("errno", 0),
        "errno_name": errno_names.errorcode.get(load.get("errno", 0), ""),
        "error": why.error,
        "insn_before": why.insn_before,
        "stats": vlog.stats(text).__dict__,
        "log": vlog.collapse(text.splitlines()),
        "log_bytes": load.get("log_bytes", len(text)),
    }


def _attached(record: dict[str, Any]) -> bool:
    events = record.get("scheduler", {}).get("events", [])
    return any(e.get("event") == "attached" for e in events)


def _dispatched(record: dict[str, Any]) -> bool:
    """Some worker ran in the sched_ext class and made progress."""
    return any(w.get("ext_at_start") and w.get("units", 0) > 0 for w in record.get("workers", []))


def cell(record: dict[str, Any], run_dir: Path, scheduler: str, binary: str) -> dict[str, Any]:
    """One cell's result from its run's record."""
    message = record.get("verifier", {})
    attached = _attached(record)
    out: dict[str, Any] = {
        "scheduler": scheduler,
        "binary": binary,
        "kernel": record.get("kernel", {}).get("release", ""),
        "topology": record.get("topology", ""),
        "attached": attached,
        "dispatched": attached and _dispatched(record),
        "run_verdict": record.get("verdict", ""),
        "run_dir": str(run_dir),
        "programs": programs(message),
        "rejection": None if attached else rejection(message),
    }
    if message.get("problem"):
        out["problem"] = message["problem"]
    elif not message:
        out["problem"] = "the guest sent no verifier statistics"
    return out


def run_cell(
    scheduler: Scheduler, kernel: str | None, topology: Topology, accel: str | None = None
) -> dict[str, Any]:
    """Boot one cell and return its result (the run directory keeps the evidence)."""
    from ktstr.monitor.settings import MonitorSettings
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get

    info = check_kernel(kernel)
    binary = str(scheduler.resolve_binary(info.release))
    record, run_dir = run_scenario(
        get(SCENARIO),
        topology,
        kernel=kernel,
        accel=accel,
        duration_s=DURATION_S,
        scheduler=scheduler,
        monitor=MonitorSettings(period_s=0),
        verifier=True,
    )
    return cell(dict(record), run_dir, scheduler.name, binary)


def check_cells(schedulers: list[Scheduler], kernels: list[str | None]) -> None:
    """Refuse, before anything boots, a kernel that cannot load schedulers or a scheduler
    whose binary is not there."""
    if not schedulers:
        raise ConfigError("no scheduler given", "name one with --scheduler (e.g. scx_simple)")
    for kernel in kernels:
        info = check_kernel(kernel)
        for scheduler in schedulers:
            if scheduler.is_eevdf:
                raise ConfigError(
                    "EEVDF is the kernel's own scheduler and loads no BPF programs",
                    "name a sched_ext scheduler with --scheduler",
                )
            scheduler.resolve_binary(info.release)
