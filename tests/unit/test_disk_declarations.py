"""Disk declarations, backing files, QEMU arguments, modules, QMP and the disk_errors check."""

import json
import lzma
import socket
import threading

import pytest

from ktstr import wire
from ktstr.checks.disks import disk_errors
from ktstr.checks.thresholds import merged
from ktstr.disk import (
    Disk,
    Throttle,
    check_disks,
    check_shareable,
    parse_disk_option,
    parse_size,
)
from ktstr.errors import ConfigError, KernelError
from ktstr.kernel.image import KernelInfo
from ktstr.kernel.modules import guest_modules, module_closure
from ktstr.record.disks import disk_records
from ktstr.scenario.model import CgroupDef, HoldSpec, Op, Scenario, Step
from ktstr.scenario.plan import compile_plan
from ktstr.scenario.work import WorkSpec, io_rand_read, io_seq_write, sequence, spin
from ktstr.topology import Topology
from ktstr.vm import drives
from ktstr.vm.qmp import Monitor, parse_blockstats
from tests.helpers import HANG_GUARD_S, ktstr, qmp_commands


def test_sizes():
    assert parse_size("256MiB") == 256 * 2**20
    assert parse_size("1G") == 2**30
    assert parse_size("1GB") == 10**9
    assert parse_size(4096) == 4096
    for bad in ("", "12 parsecs", "-1M", "0"):
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_serial_is_at_most_20_bytes_and_plain():
    assert Disk(serial="a" * 20).serial_for(0) == "a" * 20
    with pytest.raises(ConfigError, match="21 bytes; virtio-blk keeps at most 20"):
        Disk(serial="a" * 21)
    with pytest.raises(ConfigError, match="letters, digits"):
        Disk(serial="with space")
    assert Disk().serial_for(3) == "ktstr-3"
    with pytest.raises(ConfigError, match="two disks have the serial"):
        check_disks([Disk(), Disk(serial="ktstr-0")])


def test_disk_validation():
    with pytest.raises(ConfigError, match="512-byte sectors"):
        Disk(capacity=1000)
    with pytest.raises(ConfigError, match="cache mode"):
        Disk(cache="unsafe")
    with pytest.raises(ConfigError, match="positive whole number"):
        Throttle(iops=0)
    with pytest.raises(ConfigError, match="read-only disk with a fresh filesystem"):
        Disk(read_only=True, fs="ext4")


def test_cli_disk_option():
    d = parse_disk_option("64MiB,ro,iops=500,bps=1M,serial=x1,cache=writeback,keep")
    assert (d.size, d.read_only, d.serial, d.cache, d.keep) == (
        64 * 2**20,
        True,
        "x1",
        "writeback",
        True,
    )
    assert d.throttle == Throttle(iops=500, bps=2**20)
    with pytest.raises(ConfigError, match="'fast' is not understood"):
        parse_disk_option("64MiB,fast")


def test_cli_refuses_a_long_serial_before_booting():
    proc = ktstr("run", "steady", "--disk", "64MiB,serial=abcdefghijklmnopqrstu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "argument --disk: disk serial 'abcdefghijklmnopqrstu' is 21 bytes" in proc.stderr


def test_backing_files(tmp_path):
    (p,) = drives.prepare([Disk("4MiB")], tmp_path)
    assert p.path == tmp_path / "disk0.img" and p.path.stat().st_size == 4 * 2**20
    assert p.path.stat().st_blocks == 0  # sparse
    drives.cleanup([p])
    assert not p.path.exists()
    small = tmp_path / "small.img"
    small.write_bytes(b"x" * 1024)
    with pytest.raises(ConfigError, match="less than the"):
        drives.prepare(
            [Disk("4MiB", cache="writeback"), Disk("1MiB", backing=str(small))], tmp_path
        )
    assert not (tmp_path / "disk0.img").exists()  # a failed preparation leaves nothing behind
    mine = tmp_path / "mine.img"
    (p,) = drives.prepare([Disk("1MiB", backing=str(mine))], tmp_path)
    drives.cleanup([p])
    assert mine.exists()  # a user's backing file always stays
    (p,) = drives.prepare([Disk("1MiB", keep=True)], tmp_path)
    drives.cleanup([p])
    assert p.path.exists()


def test_qemu_drive_args_pin_capacity_and_limits(tmp_path):
    odd = tmp_path / "a,b.img"
    disk = Disk("1MiB", backing=str(odd), read_only=True, throttle=Throttle(iops=50, bps=4096))
    (p,) = drives.prepare([disk], tmp_path)
    argv = drives.qemu_args([p])
    drive = argv[1]
    assert "file=" + str(odd).replace(",", ",,") in drive
    for part in ("size=1048576", "readonly=on", "throttling.iops-total=50", "cache=none"):
        assert part in drive.split(",")
    assert "throttling.bps-total=4096" in drive
    assert argv[3] == "virtio-blk-pci,drive=ktstr-disk0,serial=ktstr-0"


def _fake_modules(tmp_path, deps):
    root = tmp_path / "modules" / "kernel" / "drivers"
    root.mkdir(parents=True)
    for name, needs in deps.items():
        body = b"\x7fELF....\0depends=" + ",".join(needs).encode() + b"\0vermagic=x\0"
        (root / f"{name}.ko.xz").write_bytes(lzma.compress(body))
    return tmp_path / "modules"


def _info(tmp_path, value, modules=None):
    config = tmp_path / "config"
    config.write_text(f"CONFIG_VIRTIO_BLK={value}\n" if value else "# nothing\n")
    return KernelInfo("k", "r", "k", "PVH ELF", 1, str(config), True, True, True, modules)


def test_modules_are_found_decompressed_and_ordered(tmp_path):
    mods = _fake_modules(tmp_path, {"virtio_blk": ["virtio-ring"], "virtio_ring": []})
    order = [name for name, _ in module_closure(_info(tmp_path, "m", str(mods)), "virtio_blk")]
    assert order == ["virtio_ring", "virtio_blk"]
    paths, files = guest_modules(_info(tmp_path, "m", str(mods)), "CONFIG_VIRTIO_BLK", "virtio_blk")
    assert paths == ["/ktstr/modules/virtio_ring.ko", "/ktstr/modules/virtio_blk.ko"]
    assert files[paths[1]].startswith(b"\x7fELF")
    assert guest_modules(_info(tmp_path, "y"), "CONFIG_VIRTIO_BLK", "virtio_blk") == ([], {})
    with pytest.raises(KernelError, match="has CONFIG_VIRTIO_BLK off"):
        guest_modules(_info(tmp_path, None), "CONFIG_VIRTIO_BLK", "virtio_blk")
    with pytest.raises(KernelError, match="no modules"):
        guest_modules(_info(tmp_path, "m"), "CONFIG_VIRTIO_BLK", "virtio_blk")


def test_io_work_needs_a_declared_disk():
    topo = Topology.parse("1n1l2c1t")
    scenario = Scenario("t", "", [Step([Op.add_cgroup(CgroupDef("io", 1, io_seq_write(disk=1)))])])
    with pytest.raises(ConfigError, match="uses disk 1, but the run declares 1 disk"):
        compile_plan(scenario, topo, disks=(Disk(),))
    assert compile_plan(scenario, topo, disks=(Disk(), Disk()))["workers"]
    with pytest.raises(ConfigError, match="disk I/O kinds out of sequences"):
        sequence([spin(), io_rand_read()])
    with pytest.raises(ConfigError, match="True or False"):
        WorkSpec("io_rand_read", {"direct": 1})
    assert io_rand_read(disk=2).disk == 2 and spin().disk is None


def test_io_pattern_names_each_sector():
    data = wire.io_pattern(4096, 1024)
    assert len(data) == 1024
    assert data[:16] == (4096).to_bytes(8, "little") + b"ktstr-io"
    assert data[512:520] == (4608).to_bytes(8, "little")
    assert data[16:512] == data[528:1024]


def _fake_qemu(sock, stats):
    f = sock.makefile("wb")
    f.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
    f.flush()
    for cmd in qmp_commands(sock):
        if cmd["execute"] == "qmp_capabilities":
            reply = [
                {"return": {}, "id": cmd.get("id")},
                {"event": "SHUTDOWN", "data": {"reason": "guest-shutdown"}},
            ]
        elif cmd["execute"] == "query-blockstats":
            reply = [{"event": "STOP"}, {"return": stats, "id": cmd["id"]}]
        else:
            assert cmd["execute"] == "quit"
            break
        for r in reply:
            f.write(json.dumps(r).encode() + b"\r\n")
        f.flush()
    sock.close()


def test_monitor_reads_block_stats_at_shutdown_then_quits():
    ours, theirs = socket.socketpair()
    stats = [{"device": "ktstr-disk0", "stats": {"rd_operations": 7, "timed_stats": []}}]
    fake = threading.Thread(target=_fake_qemu, args=(theirs, stats))
    fake.start()
    monitor = Monitor(ours)
    monitor.start()
    monitor.join(HANG_GUARD_S)
    fake.join(HANG_GUARD_S)
    assert not fake.is_alive()  # it received quit
    assert monitor.shutdown_reason == "guest-shutdown" and monitor.error is None
    assert monitor.blockstats == {"ktstr-disk0": {"rd_operations": 7}}
    assert parse_blockstats([{"qdev": "/x", "stats": {"wr_bytes": 1}}]) == {"/x": {"wr_bytes": 1}}


def _prepared(tmp_path):
    return drives.prepare([Disk("1MiB", keep=True)], tmp_path)


def test_disk_records_and_disk_errors(tmp_path):
    prepared = _prepared(tmp_path)
    seen = [
        {"serial": "ktstr-0", "name": "vda", "device": "/dev/vda", "stat_start": {"read_ios": 1}}
    ]
    final = [{"serial": "ktstr-0", "stat_end": {"read_ios": 11, "in_flight": 0}}]
    io = {
        "device": "/dev/vda",
        "ops": {"read": 10, "write": 0, "flush": 0},
        "bytes": {"read": 40960, "write": 0},
        "error_kinds": {"ENOSPC": 2},
    }
    workers = [{"id": 0, "start_s": 0.0, "end_s": 2.0, "io": io}, {"id": 1, "units": 5}]
    host = {"ktstr-disk0": {"rd_operations": 11, "failed_rd_operations": 1}}
    (d,) = disk_records(prepared, seen, final, host, workers)
    assert d["guest"]["stat_delta"] == {"read_ios": 10}
    assert d["workers"]["iops"] == 5.0 and d["workers"]["errors"] == 2
    assert d["host"]["failed_rd_operations"] == 1
    (f,) = disk_errors({"disks": [d]}, merged(None))
    assert f.status == "fail" and f.value == 3  # 2 refused in the guest + 1 failed in QEMU
    assert "ENOSPC x2" in f.message and "1 failed in QEMU" in f.message
    (f,) = disk_errors({"disks": [d]}, merged({"disk_errors.max_errors": 3}))
    assert f.status == "pass"
    (f,) = disk_errors({"disks": [dict(d, guest=None)], "vm_end": "poweroff"}, merged(None))
    assert f.status == "fail" and f.kind == "disk_missing"
    # A device error is seen by QEMU and again by the worker as EIO: counted once.
    eio = dict(d, workers=dict(d["workers"], errors=1, error_kinds={"EIO": 1}))
    (f,) = disk_errors({"disks": [eio]}, merged(None))
    assert f.value == 1
    # Without QEMU's counters, device errors cannot be ruled out.
    lost = disk_errors({"disks": [dict(d, host=None)]}, merged({"disk_errors.max_errors": 9}))
    assert [x.status for x in lost] == ["inconclusive", "pass"]
    assert disk_errors({}, merged(None)) == []
    # A disk the guest never reported has no worker totals (and no crash).
    (d,) = disk_records(prepared, [], [], None, workers)
    assert d["guest"] is None and d["workers"]["worker_ids"] == []


def test_disk_iops_span_covers_workers_that_ran_one_after_another(tmp_path):
    io = {"device": "/dev/vda", "ops": {"read": 50, "write": 0, "flush": 0}, "bytes": {}}
    workers = [
        {"id": 0, "start_s": 0.0, "end_s": 5.0, "io": io},
        {"id": 1, "start_s": 5.0, "end_s": 10.0, "io": io},
    ]
    seen = [{"serial": "ktstr-0", "device": "/dev/vda"}]
    (d,) = disk_records(_prepared(tmp_path), seen, [], None, workers)
    assert d["workers"]["iops"] == 10.0


def test_freeze_fs_needs_a_disk_with_a_filesystem():
    topo = Topology.parse("1n1l2c1t")
    scenario = Scenario("t", "", [Step([Op.debug_freeze_fs(0, 1000, hung_task_timeout_s=1)])])
    with pytest.raises(ConfigError, match="needs disk 0 with a filesystem"):
        compile_plan(scenario, topo, disks=(Disk(),))
    (step,) = compile_plan(scenario, topo, disks=(Disk(fs="ext4"),))["steps"]
    assert step["ops"] == [
        {"op": "debug_freeze_fs", "disk": 0, "ms": 1000, "hung_task_timeout_s": 1}
    ]


def test_kernel_health_names_the_worker_a_hung_task_report_is_about():
    from ktstr.checks.kernel_health import kernel_health

    record = {
        "workers": [{"id": 3, "pid": 107, "cgroup_path": "w"}],
        "console": ["[    8.04] INFO: task python3.11:107 blocked for more than 1 seconds."],
    }
    (f,) = kernel_health(record, merged(None))
    assert f.kind == "hung_task" and f.worker == 3 and f.message.endswith("(worker 3 (w))")


def test_plan_refuses_what_would_corrupt_or_wedge_a_disk(tmp_path):
    topo = Topology.parse("1n1l2c1t")
    raw = Scenario("t", "", [Step([Op.add_cgroup(CgroupDef("w", 1, io_seq_write()))])])
    with pytest.raises(ConfigError, match="mounted ext4 filesystem it would corrupt"):
        compile_plan(raw, topo, disks=(Disk(fs="ext4"),))
    looped = Scenario(
        "t", "", [Step([Op.debug_freeze_fs(0, 100)], HoldSpec(frac=1.0, loop_interval_s=1.0))]
    )
    with pytest.raises(ConfigError, match="still frozen \\(or in a loop\\)"):
        compile_plan(looped, topo, disks=(Disk(fs="ext4"),))
    with pytest.raises(ConfigError, match="not a whole number of 64 KiB blocks"):
        io_seq_write(bs_kb=64, overrun_kb=4)
    with pytest.raises(ConfigError, match="two disks use the backing file"):
        drives.prepare(
            [Disk(backing=str(tmp_path / "x")), Disk(backing=str(tmp_path / "x"), serial="b")],
            tmp_path,
        )


def test_stop_grace_lets_throttled_io_finish():
    topo = Topology.parse("1n1l2c1t")
    readers = Scenario("t", "", [Step([Op.add_cgroup(CgroupDef("r", 8, io_rand_read()))])])
    assert compile_plan(readers, topo, disks=(Disk(),))["stop_grace_s"] == 3.0
    slow = (Disk(throttle=Throttle(iops=2)),)
    assert compile_plan(readers, topo, disks=slow)["stop_grace_s"] == 3.0 + 2 * 8 / 2
    crawl = (Disk(throttle=Throttle(iops=1, bps=512)),)
    assert compile_plan(readers, topo, disks=crawl)["stop_grace_s"] == 60.0


def test_monitor_that_loses_qemu_early_is_abandoned_not_a_traceback():
    ours, theirs = socket.socketpair()
    theirs.sendall(b"not json\n")
    theirs.close()
    monitor = Monitor(ours)
    monitor.start()
    monitor.join()
    assert monitor.abandoned and monitor.error and monitor.blockstats is None


def test_disk_rate_plot_from_the_timeline():
    from ktstr.results.report import disk_rates

    timeline = [
        {"at_s": 0.0, "disks": {"vda": [0, 0, 0, 0]}},
        {"at_s": 0.5, "disks": {"vda": [50, 20, 10, 2]}},
        {"at_s": 1.0, "disks": {"vda": [100, 40, 20, 1]}},
    ]
    assert disk_rates({"timeline": timeline}).startswith(b"\x89PNG")
    assert disk_rates({"timeline": [{"at_s": 0.0, "util": {}}]}) is None


def test_io_throughput_is_optional_and_judged_against_the_limit():
    from ktstr.checks.disks import io_throughput

    disk = {"serial": "s", "throttle": {"iops": 200}, "workers": {"worker_ids": [0], "iops": 150.0}}
    assert io_throughput({"disks": [disk]}, merged(None)) == []
    (f,) = io_throughput({"disks": [disk]}, merged({"io_throughput.min_fraction_of_limit": 0.9}))
    assert (
        f.status == "fail" and f.value == 0.75 and "150 of 200 IOPS (75%; limit 90%)" in f.message
    )
    free = dict(disk, throttle={"iops": None})
    assert (
        io_throughput({"disks": [free]}, merged({"io_throughput.min_fraction_of_limit": 0.9})) == []
    )


FAKE_QEMU = r"""
import os, re, sys, time
sys.path[:0] = [{src!r}]
from ktstr import wire
args = " ".join(sys.argv)
channel = int(re.search(r"socket,id=ktstr0,fd=(\d+)", args).group(1))
monitor = int(re.search(r"socket,id=qmp0,fd=(\d+)", args).group(1))
os.close(monitor)  # the monitor is lost before the guest powers off
os.write(channel, wire.encode(wire.DONE, uptime_s=1.0))
print("[    3.3] reboot: Power down", flush=True)
time.sleep(600)  # -no-shutdown: paused at power-off, forever
"""


def test_a_paused_vm_whose_monitor_died_is_ended_once_the_agent_is_done(tmp_path, monkeypatch):
    """QEMU faked at the process boundary: it reports DONE, loses QMP, and pauses."""
    import sys
    from pathlib import Path

    from ktstr.vm import lifecycle, qemu
    from ktstr.vm.qemu import VmConfig

    script = tmp_path / "fake_qemu.py"
    script.write_text(FAKE_QEMU.format(src=str(Path(lifecycle.__file__).parents[2])))
    monkeypatch.setattr(
        qemu, "choose_qemu", lambda *a: qemu.QemuCommand(("qemu",), "7.2", "system", "test")
    )  # no QEMU needed for the argv
    real = lifecycle.build_argv
    monkeypatch.setattr(
        lifecycle, "build_argv", lambda cfg: [sys.executable, str(script), *real(cfg)[1:]]
    )
    monkeypatch.setattr(lifecycle, "_KILL_GRACE_S", 0.5)
    cfg = VmConfig("/k", "/i", Topology.parse("1n1l1c1t"), "tcg", drive_args=["-drive", "x"])
    result = lifecycle.run_vm(cfg, tmp_path, timeout_s=60)
    assert result.end == lifecycle.POWEROFF and result.first(wire.DONE)  # not TIMEOUT
    assert result.blockstats is None


def test_overlapping_freezes_of_one_disk_are_refused():
    topo = Topology.parse("1n1l2c1t")
    twice = Scenario(
        "t",
        "",
        [
            Step([Op.debug_freeze_fs(0, 5000)], HoldSpec(seconds=3)),
            Step([Op.debug_freeze_fs(0, 1000)], HoldSpec(seconds=3)),
        ],
    )
    with pytest.raises(ConfigError, match="freezes disk 0 again while it is still frozen"):
        compile_plan(twice, topo, disks=(Disk(fs="ext4"),))
    after = Scenario(
        "t",
        "",
        [
            Step([Op.debug_freeze_fs(0, 2000)], HoldSpec(seconds=3)),
            Step([Op.debug_freeze_fs(0, 1000)], HoldSpec(seconds=3)),
        ],
    )
    assert len(compile_plan(after, topo, disks=(Disk(fs="ext4"),))["steps"]) == 2


def test_busy_time_is_the_union_of_intervals():
    from ktstr.record.disks import _busy_time

    assert _busy_time([(0, 5), (5, 10)]) == 10
    assert _busy_time([(0, 5), (2, 4), (8, 9)]) == 6
    assert _busy_time([]) == 0


def test_io_throughput_leaves_bandwidth_limited_disks_out():
    from ktstr.checks.disks import io_throughput

    disk = {
        "serial": "s",
        "throttle": {"iops": 200, "bps": 4096},
        "workers": {"worker_ids": [0], "iops": 1.0},
    }
    assert (
        io_throughput({"disks": [disk]}, merged({"io_throughput.min_fraction_of_limit": 0.9})) == []
    )


def test_a_writable_backing_file_is_not_shared_by_parallel_vms(tmp_path):
    shared = Disk(backing=str(tmp_path / "d.img"))
    check_shareable([[shared], [shared]], 1)  # one VM at a time: fine
    check_shareable([[shared], [Disk()]], 2)  # only one VM uses it
    ro = Disk(backing=str(tmp_path / "d.img"), read_only=True)
    check_shareable([[Disk(), ro], [ro]], 4)
    with pytest.raises(ConfigError, match="disk 1 writes to .*d.img, which 3 VMs would share"):
        check_shareable([[Disk(), shared], [shared], [shared]], 2)
