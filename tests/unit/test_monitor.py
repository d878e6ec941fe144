"""The monitor's pure parts: guest-physical layout, memfd assignment, VMCOREINFO."""

import os
import signal
import struct
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from ktstr.errors import ConfigError, VmError
from ktstr.monitor import sampler, settings, vmcoreinfo
from ktstr.monitor.memory import (
    FOUR_GIB,
    GIB,
    MIB,
    GuestMemory,
    Memfd,
    Segment,
    assignments,
    machine_of,
    ram_layout,
)
from ktstr.monitor.program import node_bytes
from ktstr.topology import Topology


def test_small_guest_is_its_nodes_in_order_from_zero():
    assert ram_layout([272 * MIB, 272 * MIB]) == [
        Segment(0, 0, 0, 272 * MIB),
        Segment(272 * MIB, 1, 0, 272 * MIB),
    ]


def test_guest_of_3_5_gib_or_more_splits_at_3_gib_and_resumes_at_4_gib():
    # Two 2 GiB nodes: node 0 all low; node 1's first GiB below 3 GiB, the rest at 4 GiB.
    assert ram_layout([2 * GIB, 2 * GIB]) == [
        Segment(0, 0, 0, 2 * GIB),
        Segment(2 * GIB, 1, 0, GIB),
        Segment(FOUR_GIB, 1, GIB, GIB),
    ]
    just_below = 0xE0000000 - MIB
    assert ram_layout([just_below]) == [Segment(0, 0, 0, just_below)]
    assert ram_layout([0xE0000000]) == [
        Segment(0, 0, 0, 3 * GIB),
        Segment(FOUR_GIB, 0, 3 * GIB, 0xE0000000 - 3 * GIB),
    ]


def test_layout_refuses_empty_nodes():
    with pytest.raises(ConfigError):
        ram_layout([])
    with pytest.raises(ConfigError):
        ram_layout([MIB, 0])


def test_node_bytes_follow_the_topology():
    topo = Topology.parse("2n2l1c1t")
    assert node_bytes(topo) == [mib * MIB for mib in topo.node_memory()]
    assert sum(node_bytes(topo)) == topo.memory * MIB


def fd(n: int, node: int | None, size: int) -> Memfd:
    return Memfd(path=None, fd=n, node=node, size=size)  # type: ignore[arg-type]


def test_named_memfds_are_assigned_by_name_whatever_their_fd_order():
    fds = [fd(3, 1, MIB), fd(9, 0, MIB)]
    assert assignments(fds, [MIB, MIB]) == [[1, 0]]
    assert assignments(fds, [MIB, 2 * MIB]) == []


def test_unnamed_memfds_try_fd_order_first_then_the_other_orders_of_equal_sizes():
    fds = [fd(3, None, MIB), fd(9, None, MIB)]
    assert assignments(fds, [MIB, MIB]) == [[0, 1], [1, 0]]
    # Node 0 holds the remainder: sizes decide alone.
    fds = [fd(3, None, MIB), fd(4, None, 2 * MIB)]
    assert assignments(fds, [2 * MIB, MIB]) == [[1, 0]]
    assert assignments(fds, [3 * MIB]) == []
    many = [fd(i, None, MIB) for i in range(5)]
    assert len(assignments(many, [MIB] * 5)) == 24  # bounded


def vmcoreinfo_note(text: bytes) -> bytes:
    name = vmcoreinfo.NAME + b"\0"
    return struct.pack("<III", len(vmcoreinfo.NAME), len(text), 0) + name + text


GOOD = (
    b"OSRELEASE=7.2.13+deb14-cloud-amd64\nPAGESIZE=4096\n"
    b"SYMBOL(swapper_pg_dir)=ffffffff82a3e000\nKERNELOFFSET=1e000000\n"
)


def test_note_is_parsed_and_its_offset_read():
    desc = vmcoreinfo.note_at(vmcoreinfo_note(GOOD) + b"\0" * 64)
    assert desc == GOOD
    fields = vmcoreinfo.parse(desc + b"\0junk after the text")
    assert fields["OSRELEASE"] == "7.2.13+deb14-cloud-amd64"
    assert vmcoreinfo.kernel_offset(fields) == 0x1E000000
    vmcoreinfo.check(fields, "7.2.13+deb14-cloud-amd64")


def test_lookalikes_are_not_notes():
    assert vmcoreinfo.note_at(b"\0" * 4096) is None
    assert vmcoreinfo.note_at(vmcoreinfo_note(GOOD)[:-1]) is None  # desc runs past the page
    bad_type = bytearray(vmcoreinfo_note(GOOD))
    bad_type[8] = 1
    assert vmcoreinfo.note_at(bytes(bad_type)) is None


def test_untrusted_text_is_refused():
    with pytest.raises(ValueError, match="not ASCII"):
        vmcoreinfo.parse(b"OSRELEASE=\xff\n")
    with pytest.raises(ValueError, match="not KEY=value"):
        vmcoreinfo.parse(b"OSRELEASE=x\nno equals sign\n")
    with pytest.raises(ValueError, match="not KEY=value"):
        vmcoreinfo.parse(b"OSRELEASE=x\x1b[31m\n")


def test_check_refuses_another_release_and_missing_fields_in_one_sentence():
    fields = vmcoreinfo.parse(GOOD)
    with pytest.raises(VmError) as err:
        vmcoreinfo.check(fields, "6.12.117+deb13-cloud-amd64")
    assert "not '6.12.117+deb13-cloud-amd64'" in str(err.value)
    del fields["KERNELOFFSET"]
    with pytest.raises(VmError, match="lacks KERNELOFFSET.*CONFIG_VMCORE_INFO"):
        vmcoreinfo.check(fields, None)


@pytest.fixture
def memfds():
    """This process's own memfds, named as QEMU 7.2 names them."""
    fds = []

    def make(data: bytes, name: str = "memory-backend-memfd") -> int:
        fd = os.memfd_create(name)
        os.write(fd, data)
        fds.append(fd)
        return fd

    yield make
    for fd in fds:
        os.close(fd)


def test_guest_memory_maps_a_process_memfds_read_only(memfds):
    page = 4096
    node0 = b"\0" * page + b"NEEDLE" + b"\0" * (page - 6)
    node1 = b"\x11" * (2 * page)
    memfds(node0)
    memfds(node1)
    mem = GuestMemory(os.getpid(), [2 * page, 2 * page])
    try:
        assert mem.candidates == [[0, 1], [1, 0]]  # equal sizes, unnamed: both orders
        first = mem.assignment
        hits = mem.find(b"NEEDLE")
        assert len(hits) == 1
        (mapping, offset) = hits[0]
        assert offset == page
        gpa = mem.gpa(mapping, offset)
        assert mem.read(gpa, 6) == b"NEEDLE"
        reader = mem.reader(mem.segments[0])
        data = reader(0, 16, 0, True)
        assert len(data) == 16
        mem.assignment = list(reversed(first))  # another assignment: same readers
        assert mem.gpa(mapping, offset) != gpa
        with pytest.raises(ValueError, match="not in guest RAM"):
            mem.read(4 * page, 1)
    finally:
        mem.close()


def test_guest_memory_refuses_sizes_that_do_not_match(memfds):
    memfds(b"\0" * 4096, name="mem0")
    with pytest.raises(VmError, match="do not match the topology's nodes"):
        GuestMemory(os.getpid(), [8192])


def test_monitor_period_from_the_environment(monkeypatch):
    monkeypatch.delenv(settings.ENV, raising=False)
    assert settings.from_env().period_s is None
    for raw, want in (("0", 0.0), ("off", 0.0), ("1", 0.1), ("0.25", 0.25)):
        monkeypatch.setenv(settings.ENV, raw)
        assert settings.from_env().period_s == want
    for raw in ("junk", "0.001", "nan", "-1"):
        monkeypatch.setenv(settings.ENV, raw)
        with pytest.raises(ConfigError, match=settings.ENV):
            settings.from_env()


def test_sampler_without_debug_info_says_why_and_never_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "vmlinux").write_bytes(b"not an elf")
    kernel = SimpleNamespace(release="9.9.9-test", boot_path=str(tmp_path / "vmlinux"))
    mon = sampler.Sampler(tmp_path, Topology.parse("1n1l1c1t"), kernel)  # type: ignore[arg-type]
    mon.start()
    mon.stop()
    summary = mon.summary()
    assert summary["samples"] == 0 and summary["period_s"] == 0.1
    assert "ktstr kernel fetch --debug" in summary["unavailable"]
    assert not (tmp_path / sampler.FILE).exists()


def test_sampler_summary_aggregates_per_cpu_and_keeps_the_last_counters(tmp_path):
    mon = sampler.Sampler(tmp_path, Topology.parse("1n1l1c1t"), None)  # type: ignore[arg-type]
    cpus = [{"cpu": 0, "nr_running": 1, "local_dsq_nr": 0}, {"cpu": 1, "nr_running": 3}]
    mon._account(cpus, {"SCX_EV_SELECT_CPU_FALLBACK": 2}, 0.01, 10.0, None)
    cpus = [{"cpu": 0, "nr_running": 3, "local_dsq_nr": 5}, {"cpu": 1, "nr_running": 1}]
    mon._account(cpus, {"SCX_EV_SELECT_CPU_FALLBACK": 7}, 0.03, 10.1, 10.0)
    summary = mon.summary()
    assert summary["samples"] == 2
    assert summary["per_cpu"]["0"] == {
        "nr_running_max": 3,
        "nr_running_mean": 2.0,
        "local_dsq_max": 5,
    }
    assert summary["per_cpu"]["1"]["nr_running_max"] == 3
    assert summary["events"] == {"SCX_EV_SELECT_CPU_FALLBACK": 7}
    assert summary["interval_s"]["median"] == pytest.approx(0.1)


def test_scanning_guest_ram_reads_only_what_the_guest_wrote(memfds):
    # A 64 MiB node the guest touched in two places: the scan finds the needle across a
    # chunk boundary and allocates nothing in the holes (a mapped scan would fill them).
    fd = memfds(b"")
    os.ftruncate(fd, 64 * MIB)
    os.pwrite(fd, b"x" * 4096, 0)
    os.pwrite(fd, b"NEEDLE", 32 * MIB - 3)
    mem = GuestMemory(os.getpid(), [64 * MIB])
    try:
        assert mem.find(b"NEEDLE", chunk=MIB) == [(0, 32 * MIB - 3)]
        assert mem.read(32 * MIB - 3, 6) == b"NEEDLE"
        assert mem.read(16 * MIB, 8) == b"\0" * 8  # a hole reads as zeros
    finally:
        mem.close()
    assert os.fstat(fd).st_blocks * 512 < 4 * MIB


def test_qemu_pid_is_our_child_naming_a_file_in_the_run_dir(tmp_path):
    import shutil
    import subprocess

    fake = tmp_path / "qemu-system-x86_64"
    shutil.copy("/bin/sh", fake)
    run_dir = tmp_path / "runs" / "x"
    argv = [str(fake), "-c", "sleep 30; true", f"{run_dir}-1/initrd.cpio"]
    child = subprocess.Popen(argv, start_new_session=True)
    try:
        assert sampler.qemu_pid(run_dir) is None  # runs/x is not runs/x-1
        assert sampler.qemu_pid(Path(f"{run_dir}-1")) == child.pid
        assert sampler.qemu_pid(Path(f"{run_dir}-1"), parent=1) is None  # not init's child
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the shell and its sleep
        child.wait()


def test_q35_keeps_2_gib_low_from_2_75_gib_of_ram():
    assert ram_layout([GIB, GIB], "q35") == [Segment(0, 0, 0, GIB), Segment(GIB, 1, 0, GIB)]
    assert ram_layout([0xB0000000], "q35") == [
        Segment(0, 0, 0, 2 * GIB),
        Segment(FOUR_GIB, 0, 2 * GIB, 0xB0000000 - 2 * GIB),
    ]


def test_the_machine_comes_from_qemus_command_line_and_unknown_ones_are_refused():
    assert machine_of(["qemu", "-M", "pc", "-m", "544"]) == "pc"
    assert machine_of(["qemu", "-machine", "type=pc-q35-10.0,kernel-irqchip=split"]) == "q35"
    assert machine_of(["qemu", "-M", "microvm"]) == "microvm"
    assert machine_of(["qemu", "-m", "544"]) is None
    with pytest.raises(VmError, match="does not know the RAM layout of QEMU's 'microvm'"):
        ram_layout([MIB], "microvm")


def test_sampler_skips_a_failed_read_and_gives_up_on_a_run_of_them(tmp_path, monkeypatch):
    import drgn

    from ktstr.monitor import rq

    calls = {"n": 0}

    def flaky(prog, cpus, scx=None):
        calls["n"] += 1
        if calls["n"] % 2:
            raise drgn.FaultError("could not read memory", 0x1000)
        return [{"cpu": 0, "nr_running": 1}]

    monkeypatch.setattr(rq, "possible_cpus", lambda prog: [0])
    monkeypatch.setattr(rq, "has_scx", lambda prog: False)
    monkeypatch.setattr(rq, "sample_all", flaky)
    attached = SimpleNamespace(prog=None)
    mon = sampler.Sampler(tmp_path, Topology.parse("1n1l1c1t"), None, period_s=0.01)  # type: ignore[arg-type]
    threading.Timer(0.3, mon._halt.set).start()
    mon._sample(attached)  # type: ignore[arg-type]
    assert mon.samples > 3 and mon.read_errors >= mon.samples - 1
    assert len((tmp_path / sampler.FILE).read_text().splitlines()) == mon.samples

    def broken(prog, cpus, scx=None):
        raise drgn.FaultError("could not read memory", 0x1000)

    monkeypatch.setattr(rq, "sample_all", broken)
    mon = sampler.Sampler(tmp_path, Topology.parse("1n1l1c1t"), None, period_s=0.001)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="50 samples in a row failed"):
        mon._sample(attached)  # type: ignore[arg-type]
