"""The monitor in a real VM when a scheduler goes wrong: the failure dump, and the monitor
checks firing for their reason.  Needs the guest kernel's debug info (skips without it)."""

import json
from pathlib import Path

import pytest

from ktstr.errors import KernelError
from ktstr.kernel import debuginfo
from ktstr.kernel.store import resolve
from ktstr.monitor import dump, sampler
from ktstr.monitor.settings import MonitorSettings
from ktstr.topology import Topology


@pytest.fixture(scope="module")
def debug():
    kernel = resolve()
    try:
        return debuginfo.find(kernel.release, Path(kernel.boot_path))
    except KernelError as err:
        pytest.skip(str(err))


def test_a_scheduler_that_stalls_kernel_threads_is_dumped_from_the_host(debug):
    """scx_qmap -T 2 never runs every second kernel thread it is given: the guest's own
    workers (kworkers, ksoftirqd) starve, yet the host keeps sampling, names the stalled
    CPU and task, and writes the dump with the scheduler's queues and maps."""
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get
    from ktstr.scheduler import from_cli

    record, run_dir = run_scenario(
        get("steady"),
        Topology.parse("1n1l2c1t"),
        duration_s=8,
        scheduler=from_cli("scx_qmap"),
        extra_args=("-T", "2"),
        monitor=MonitorSettings(0.1),
    )
    mon = record["monitor"]
    assert "unavailable" not in mon, mon
    info = mon["dump"]
    assert info["file"] == dump.FILE and info["paused"], info
    assert info["trigger"]["reason"].startswith("a stall is developing"), info
    body = json.loads((run_dir / dump.FILE).read_text())
    stalled = body["trigger"]
    # The host names the CPU and the task, and its wait passed half the watchdog timeout.
    assert stalled["cpu"] in (0, 1) and stalled["pid"] > 0 and stalled["comm"]
    assert 2 * stalled["jiffies"] > stalled["watchdog_timeout_jiffies"]
    waiting = {t["pid"]: t for t in body["runnable"][str(stalled["cpu"])]}
    assert stalled["pid"] in waiting and waiting[stalled["pid"]]["kthread"], waiting
    # qmap holds what it stalls in no queue at all: runnable, on no DSQ.
    assert waiting[stalled["pid"]]["dsq"] is None
    assert {d["kind"] for d in body["dsqs"]} >= {"local", "global"}
    maps = {m["name"]: m for m in body["maps"]}
    assert {"scx_qmap.bss", "scx_qmap.rodata", "qmap_ops"} <= set(maps), sorted(maps)
    assert maps["qmap_ops"]["type"] == "STRUCT_OPS"
    # .rodata rendered from the scheduler's BTF: the -T 2 the loader set.
    rodata = maps["scx_qmap.rodata"]["variables"]
    assert rodata["stall_kernel_nth"] == 2 and rodata["stall_user_nth"] == 0, rodata
    # Sampling went on after the dump: samples taken after the trigger.
    lines = [json.loads(x) for x in (run_dir / sampler.FILE).read_text().splitlines()]
    assert sum(1 for s in lines if s["t"] > stalled["at_s"]) >= 5
    assert mon["longest_wait"]["jiffies"] >= stalled["jiffies"]
    # The kernel's own account of the exit, read before it was freed with the scheduler.
    assert body["exit"]["kind"] == "SCX_EXIT_ERROR_STALL" and info["has_exit"], body["exit"]
    # Its message: the task that failed to run, or the watchdog itself failing to check in
    # (it runs from a kernel thread the scheduler may be the one starving).
    assert "failed to run for" in body["exit"]["msg"] or "watchdog" in body["exit"]["msg"]
    assert record["verdict"] == "fail"  # the stall ejected the scheduler: a scheduler finding


def test_the_monitor_checks_fire_on_a_scheduler_that_piles_every_task_on_one_cpu(debug):
    """scx_ktstr's pile knob puts every task on CPU 0's local DSQ: enforced, the monitor's
    imbalance check fails the run for that reason (other checks stay as they were)."""
    from ktstr.fixture_sched import SCX_KTSTR, knob_args
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get

    record, _ = run_scenario(
        get("steady"),
        Topology.parse("1n2l2c1t"),
        duration_s=6,
        scheduler=SCX_KTSTR,
        extra_args=knob_args(pile=0),
        monitor=MonitorSettings(0.1, enforce=True),
    )
    found = [f for f in record["findings"] if f["check"] == "monitor"]
    assert any(f["kind"] == "imbalanced" and f["status"] == "fail" for f in found), found
    assert record["monitor"]["per_cpu"]["0"]["nr_running_max"] >= 4
