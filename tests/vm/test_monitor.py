"""The monitor attaches to a running VM from the host and reads values that must be right."""

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from ktstr import paths, wire
from ktstr.errors import KernelError, VmError
from ktstr.kernel import debuginfo
from ktstr.kernel.store import resolve
from ktstr.monitor import program, rq, scx
from ktstr.topology import Topology
from ktstr.vm.accel import choose
from ktstr.vm.boot import boot
from tests.helpers import HANG_GUARD_S
from tests.vm.conftest import qemu_pids_for

# Two nodes, whose memfds QEMU 7.2 names alike, must be told apart; 4 GiB of RAM puts
# node 1 on both sides of the pc machine's 3 GiB split.  The host allocates only what
# the guest touches.
TOPO = Topology.parse("2n2l1c1t", memory_mib=4096)


@pytest.fixture(scope="module")
def kernel():
    return resolve()


@pytest.fixture(scope="module")
def debug(kernel):
    try:
        return debuginfo.find(kernel.release, Path(kernel.boot_path))
    except KernelError as err:
        pytest.skip(str(err))


@contextlib.contextmanager
def hanging_vm(kernel, topology: Topology):
    """A VM whose agent idles ('hang' mode) until the block ends it; yields QEMU's pid."""
    run_dir = paths.new_run_dir("test-monitor")
    hello = threading.Event()
    ended: dict = {}

    def on_message(msg: dict) -> None:
        if msg.get("kind") == wire.HELLO:
            hello.set()

    def go() -> None:
        try:
            ended["boot"] = boot(
                topology,
                kernel,
                choose(None, kernel.boot_path),
                run_dir,
                {"mode": "hang"},
                strict=False,
                on_message=on_message,
            )
        finally:
            hello.set()  # a VM that never said hello must not keep the test waiting

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    assert hello.wait(HANG_GUARD_S), "the guard fired: the VM never said hello"
    pids = qemu_pids_for(str(run_dir))
    assert len(pids) == 1, f"the VM ended before the monitor could attach: {ended}"
    pid = int(pids[0])
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):  # ended by its own timeout meanwhile
            os.kill(pid, signal.SIGTERM)  # the VM this block started
        thread.join(HANG_GUARD_S)
    assert not qemu_pids_for(str(run_dir)), "QEMU left running"


@pytest.fixture
def running(kernel, debug):
    with hanging_vm(kernel, TOPO) as pid:
        yield pid


def test_a_randomized_kernel_base_is_read_from_the_guests_own_note(kernel, debug):
    # Booted as a bzImage, the decompressor randomizes the kernel's base (an ELF vmlinux
    # booted directly skips it): the attach must take the offset from VMCOREINFO.
    vmlinuz = Path(kernel.boot_path).with_name("vmlinuz")
    if not vmlinuz.is_file():
        pytest.skip(f"no bzImage next to {kernel.boot_path}")
    bzimage = dataclasses.replace(kernel, boot_path=str(vmlinuz), boot_method="bzImage")
    topo = Topology.parse("1n1l2c1t")
    with hanging_vm(bzimage, topo) as pid:
        attached = program.attach(pid, topo, debug.path, kernel.release)
        try:
            prog = attached.prog
            print(f"KERNELOFFSET {attached.kaslr_offset:#x}")
            assert attached.kaslr_offset % (2 << 20) == 0  # CONFIG_PHYSICAL_ALIGN
            assert prog["init_task"].comm.string_() == b"swapper/0"
            assert prog["init_uts_ns"].name.release.string_().decode() == kernel.release
            assert rq.nr_cpu_ids(prog) == topo.cpus
            assert all(s["nr_running"] >= 0 for s in rq.sample_all(prog, [0, 1]))
        finally:
            attached.close()


def test_attach_reads_the_guests_kernel_and_refuses_a_wrong_description(running, kernel, debug):
    attached = program.attach(running, TOPO, debug.path, kernel.release)
    try:
        prog = attached.prog
        assert attached.timings["total_s"] > 0
        assert rq.nr_cpu_ids(prog) == TOPO.cpus
        assert rq.possible_cpus(prog) == list(range(TOPO.cpus))
        assert prog["init_task"].comm.string_() == b"swapper/0"
        assert prog["init_uts_ns"].name.release.string_().decode() == kernel.release
        assert [s.gpa for s in attached.memory.segments] == [0, 2 << 30, 4 << 30]
        # Every range of RAM the kernel uses lies in a segment the layout mapped.
        memory = prog["memblock"].memory
        for i in range(memory.cnt.value_()):
            base, size = memory.regions[i].base.value_(), memory.regions[i].size.value_()
            assert any(
                s.gpa <= base and base + size <= s.gpa + s.size for s in attached.memory.segments
            ), f"memblock region {base:#x}+{size:#x} outside the mapped guest RAM"

        first = rq.sample_all(prog, rq.possible_cpus(prog))
        for sample in first:
            assert sample["nr_running"] >= 0
            assert sample["scx_nr_running"] == 0 and sample["local_dsq_nr"] == 0  # EEVDF
            assert sample["curr_class"] in ("idle", "fair", "rt", "stop", "dl")
            assert sample["curr_pid"] >= 0 and sample["curr_comm"]
        # rq clocks advance; an idle CPU's only when it wakes, so give each a few seconds.
        deadline = time.monotonic() + 30
        pending = {s["cpu"]: s["clock"] for s in first}
        while pending and time.monotonic() < deadline:
            time.sleep(0.2)
            pending = {c: t for c, t in pending.items() if rq.clock(prog, c) <= t}
        assert not pending, f"rq clock did not advance on CPU(s) {sorted(pending)}"

        state = scx.state(prog)
        assert state["enable_state"] == "SCX_DISABLED" and state["ops"] is None
        assert scx.events(prog) is None  # no scheduler attached, no counters to read
    finally:
        attached.close()
    # The same VM, attached with what it was not started with: one sentence each.
    with pytest.raises(VmError, match="do not match the topology's nodes"):
        program.attach(running, Topology.parse("1n1l2c1t"), debug.path, kernel.release)
    with pytest.raises(VmError, match="not '6.1.0-other'"):
        program.attach(running, TOPO, debug.path, "6.1.0-other")


def test_a_run_with_the_monitor_on_streams_samples_and_summarizes_them(debug, monkeypatch):
    from ktstr.monitor import sampler, settings
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get

    monkeypatch.setenv(settings.ENV, "0.1")
    record, run_dir = run_scenario(get("steady"), Topology.parse("1n1l2c1t"), duration_s=4)
    monitor = record["monitor"]
    assert "unavailable" not in monitor, monitor
    lines = (run_dir / sampler.FILE).read_text().splitlines()
    assert monitor["samples"] == len(lines) > 10
    assert set(monitor["per_cpu"]) == {"0", "1"}
    # Workers spin on both CPUs for 4 s: some sample saw a CPU with a runnable task.
    assert max(c["nr_running_max"] for c in monitor["per_cpu"].values()) >= 1
    # The period is the host's: kept within a factor of two even on a loaded host.
    assert 0.05 <= monitor["interval_s"]["median"] <= 0.2, monitor
    assert record["verdict"] == "pass"


def test_the_monitor_sees_a_sched_ext_scheduler_run_the_workers(debug, monkeypatch):
    from ktstr.monitor import sampler, settings
    from ktstr.runner import run_scenario
    from ktstr.scenario.catalog import get
    from ktstr.scheduler import from_cli

    monkeypatch.setenv(settings.ENV, "0.1")
    record, run_dir = run_scenario(
        get("steady"), Topology.parse("1n2l2c1t"), duration_s=6, scheduler=from_cli("scx_simple")
    )
    assert "unavailable" not in record["monitor"], record["monitor"]
    lines = [json.loads(line) for line in (run_dir / sampler.FILE).read_text().splitlines()]
    enabled = [s for s in lines if s["scx"]["enable_state"] == "SCX_ENABLED"]
    assert enabled and all(s["scx"]["ops"] == "simple" for s in enabled)
    # While it is enabled, the workers are sched_ext tasks: on some CPU, in some sample.
    assert any(c["curr_class"] == "ext" and c["scx_nr_running"] >= 1 for s in enabled
               for c in s["cpus"])  # fmt: skip
    assert all("SCX_EV_SELECT_CPU_FALLBACK" in s["events"] for s in enabled)
    assert set(record["monitor"]["events"]) >= {"SCX_EV_DISPATCH_KEEP_LAST"}
    # scx_simple queues every task on the one DSQ it creates, id 0.
    assert all([d["id"] for d in s["dsqs"]] == [0] for s in enabled)
    assert "0" in record["monitor"]["dsq_max"]
