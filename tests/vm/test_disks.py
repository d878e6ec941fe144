"""Disks in real VMs: exact bytes, the capacity limit, read-only, serials, throttling, counters."""

import json
from pathlib import Path

import pytest

from ktstr import wire
from ktstr.disk import Disk, Throttle
from ktstr.scenario.model import CgroupDef, HoldSpec, Op, Scenario, Step
from ktstr.scenario.work import io_rand_read, io_seq_write, io_sync
from ktstr.topology import Topology
from tests.helpers import check_status, ktstr

TOPO = "1n1l2c1t"
SERIAL_20 = "abcdefghij0123456789"


def _run(name: str, cgroups: list[CgroupDef], disks: tuple[Disk, ...], duration: float = 4):
    from ktstr.runner import run_scenario

    scenario = Scenario(
        name, name, [Step([Op.add_cgroup(c) for c in cgroups])], duration, disks=disks
    )
    return run_scenario(scenario, Topology.parse(TOPO))


def _disk(record: dict, serial: str) -> dict:
    return next(d for d in record["disks"] if d["serial"] == serial)


def _mismatches(path: Path, start: int, end: int, bs: int) -> list[int]:
    bad = []
    with open(path, "rb") as f:
        f.seek(start)
        for offset in range(start, end, bs):
            if f.read(bs) != wire.io_pattern(offset, bs):
                bad.append(offset)
    return bad


def test_written_pattern_reaches_the_backing_file_and_both_sides_count_it(tmp_path):
    backing = tmp_path / "data.img"
    disk = Disk("8MiB", backing=str(backing), serial=SERIAL_20)
    writer = CgroupDef("w", workers=1, work=io_seq_write(bs_kb=64, sync_every=8))
    record, _ = _run("disk_pattern", [writer], (disk,))
    assert record["verdict"] == "pass", record["findings"]
    d = _disk(record, SERIAL_20)
    assert d["guest"]["serial"] == SERIAL_20  # all 20 bytes, as /sys/block/vdX/serial reads
    assert d["guest"]["sectors"] == 8 * 2**20 // 512 and d["guest"]["read_only"] is False
    io = record["workers"][0]["io"]
    assert io["errors"] == 0 and io["ops"]["write"] > 0 and io["ops"]["flush"] > 0
    # The pattern is byte-identical in the backing file, and the capacity did not grow.
    start, end = io["written"]
    assert end - start == 8 * 2**20  # the writer wrapped around the whole disk
    assert _mismatches(backing, start, end, 64 * 1024) == []
    assert backing.stat().st_size == 8 * 2**20
    # Both sides of the VM boundary saw the same writes and the flushes.
    host, guest = d["host"], d["guest"]["stat_delta"]
    assert host["wr_bytes"] == io["bytes"]["write"] == guest["write_sectors"] * 512
    assert host["wr_operations"] == io["ops"]["write"]
    assert host["flush_operations"] >= io["ops"]["flush"] > 0
    assert guest["flush_ios"] >= io["ops"]["flush"]
    assert host["failed_wr_operations"] == 0


def test_capacity_and_read_only_refuse_io_with_counted_errors(tmp_path):
    edge = Disk("1MiB", backing=str(tmp_path / "edge.img"), cache="writeback")
    locked = Disk("1MiB", backing=str(tmp_path / "ro.img"), read_only=True, serial="locked")
    cgroups = [
        CgroupDef("past_end_w", workers=1, work=io_seq_write(disk=0, overrun_kb=128)),
        CgroupDef("past_end_r", workers=1, work=io_rand_read(disk=0, bs_kb=64, overrun_kb=64)),
        CgroupDef("ro_w", workers=1, work=io_seq_write(disk=1)),
    ]
    record, _ = _run("disk_errors", cgroups, (edge, locked))
    by_cgroup = {w["cgroup_path"]: w["io"] for w in record["workers"]}
    # Past the end: the guest's block layer refuses, the worker counts it and goes on.
    assert by_cgroup["past_end_w"]["error_kinds"].get("ENOSPC", 0) > 0
    assert by_cgroup["past_end_w"]["ops"]["write"] > 0
    assert by_cgroup["past_end_r"]["error_kinds"].get("short_read", 0) > 0
    assert (tmp_path / "edge.img").stat().st_size == 2**20  # no growth
    assert _disk(record, "ktstr-0")["cache"] == "writeback"
    # Read-only: the guest sees it so, and every write fails.
    assert _disk(record, "locked")["guest"]["read_only"] is True
    ro = by_cgroup["ro_w"]
    assert ro["ops"]["write"] == 0 and ro["errors"] > 0 and set(ro["error_kinds"]) <= {"EPERM"}
    assert (tmp_path / "ro.img").read_bytes() == bytes(2**20)
    # Nothing crashed; disk_errors names both disks and their error kinds.
    assert record["vm_end"] == "poweroff"
    status = {f["check"]: f["status"] for f in record["findings"] if f["check"] != "disk_errors"}
    assert status["kernel_health"] == "pass" and status["not_stuck"] == "pass"
    failed = [f for f in record["findings"] if f["check"] == "disk_errors"]
    assert [f["status"] for f in failed] == ["fail", "fail"]
    assert "ENOSPC" in failed[0]["message"] and "EPERM" in failed[1]["message"]
    assert record["verdict"] == "fail"


def test_iops_and_bandwidth_limits_hold_within_15_percent_while_unthrottled_is_faster():
    limit, bandwidth = 100, 2**20
    disks = (
        Disk("16MiB", throttle=Throttle(iops=limit)),
        Disk("16MiB", serial="free"),
        Disk("16MiB", serial="narrow", throttle=Throttle(bps=bandwidth)),
    )
    cgroups = [
        CgroupDef("slow", workers=2, work=io_rand_read(disk=0)),
        CgroupDef("fast", workers=1, work=io_rand_read(disk=1)),
        CgroupDef("wide", workers=1, work=io_rand_read(disk=2, bs_kb=64)),
    ]
    record, _ = _run("disk_throttle", cgroups, disks, duration=5)
    assert record["verdict"] == "pass", record["findings"]
    throttled, free, narrow = record["disks"]
    assert abs(narrow["workers"]["bytes_per_s"] - bandwidth) <= 0.15 * bandwidth, narrow
    assert throttled["throttle"]["iops"] == limit
    measured = throttled["workers"]["iops"]
    assert abs(measured - limit) <= 0.15 * limit, measured
    assert free["workers"]["iops"] > 1.5 * limit, free["workers"]


@pytest.mark.parametrize("scheduler", ["eevdf", "scx_simple"])
def test_io_wakeup_scenario_passes(scheduler, tmp_path):
    out = tmp_path / "record.json"
    args = ["run", "io_wakeup", "--topology", "1n2l2c1t", "--duration", "6", "--json", str(out)]
    if scheduler != "eevdf":
        args += ["--scheduler", scheduler]
    proc = ktstr(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads(out.read_text())
    (disk,) = record["disks"]
    assert disk["throttle"]["iops"] == 200 and disk["workers"]["errors"] == 0
    assert disk["host"]["rd_operations"] > 0 and disk["host"]["flush_operations"] > 0
    assert check_status(proc.stdout, "disk_errors") == "PASS" and "vda ktstr-0" in proc.stdout
    assert sum(1 for s in record["timeline"] if s.get("disks", {}).get("vda")) > 5
    # The optional throughput check and the I/O metrics work on the same record.
    run_dir = proc.stdout.rsplit("run dir: ", 1)[1].strip()
    judged = ktstr("check", run_dir, "--set", "io_throughput.min_fraction_of_limit=0.5")
    assert check_status(judged.stdout, "io_throughput") == "PASS", judged.stdout
    from ktstr.results.metrics import values

    assert values(record)["io_iops"] > 0 and values(record)["io_lat_p99"] > 0


def test_io_convoy_scenario_passes_under_eevdf(tmp_path):
    out = tmp_path / "record.json"
    proc = ktstr(
        "run", "io_convoy", "--topology", "1n2l2c1t", "--duration", "6", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (disk,) = json.loads(out.read_text())["disks"]
    assert disk["host"]["wr_operations"] > 0 and disk["host"]["rd_operations"] > 0
    assert len(disk["workers"]["worker_ids"]) == 4


def test_gauntlet_disk_option_replaces_the_scenarios_disks():
    proc = ktstr(
        "gauntlet", "io_convoy", "--presets", "tiny-2llc", "--duration", "5",
        "--disk", "32MiB,iops=400,serial=gauntlet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "io_convoy[tiny-2llc]: PASS" in ln)
    run_dir = Path(line.rsplit("(", 1)[1].rstrip(")"))
    (disk,) = json.loads((run_dir / "record.json").read_text())["disks"]
    assert disk["serial"] == "gauntlet" and disk["throttle"]["iops"] == 400
    assert disk["guest"]["sectors"] == 32 * 2048
    assert disk["workers"]["iops"] > 130  # past the scenario's own 100-IOPS limit


def test_probe_shows_declared_disks():
    proc = ktstr("vm", "probe", "--topology", TOPO, "--disk", "4MiB,ro,serial=probe-disk")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "disk vda" in proc.stdout and "probe-disk 8192 sectors ro" in proc.stdout


def test_frozen_filesystem_blocks_a_writer_and_kernel_health_reports_the_hung_task():
    """A real kernel warning raised in the guest: the hung-task detector on a frozen ext4."""
    from ktstr.runner import run_scenario

    scenario = Scenario(
        "debug_hung_task",
        "an fsync writer on ext4, the filesystem frozen for 5 s",
        [
            Step(
                [Op.add_cgroup(CgroupDef("w", workers=1, work=io_sync(path="/mnt/disk0")))],
                HoldSpec(seconds=2),
            ),
            Step([Op.debug_freeze_fs(0, 5000, hung_task_timeout_s=1)], HoldSpec(seconds=6)),
        ],
        duration_s=8,
        disks=(Disk("32MiB", fs="ext4"),),
    )
    record, _ = run_scenario(scenario, Topology.parse(TOPO))
    (worker,) = record["workers"]
    assert worker["units"] > 0 and worker["error"] is None  # it wrote on ext4 before and after
    hung = [
        f for f in record["findings"] if f["check"] == "kernel_health" and f["status"] == "fail"
    ]
    assert [f["kind"] for f in hung] == ["hung_task"], record["findings"]
    assert f":{worker['pid']} blocked for more than" in hung[0]["message"]
    assert hung[0]["worker"] == 0 and "(worker 0 (w))" in hung[0]["message"]
    stuck = [f for f in record["findings"] if f["check"] == "not_stuck" and f["status"] == "fail"]
    assert stuck and stuck[0]["worker"] == 0 and 1.5 <= stuck[0]["at_s"] <= 3.0
    assert record["disks"][0]["host"]["flush_operations"] > 0  # fsyncs reached the device
    assert record["verdict"] == "fail"
