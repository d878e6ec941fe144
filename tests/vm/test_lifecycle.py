"""Every way a VM can end is classified, explained, and leaves nothing behind."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ktstr import paths, wire
from ktstr.errors import VmError
from ktstr.kernel.store import resolve
from ktstr.topology import Topology
from ktstr.vm import lifecycle
from ktstr.vm.accel import choose
from ktstr.vm.boot import boot
from tests.helpers import finish, wait_until
from tests.vm.conftest import qemu_pids_for

TINY = Topology.parse("1n1l1c1t")
RUN_FILES = {"console.log", "channel.jsonl", "qemu.argv", "qemu.stderr.log"}


@pytest.fixture(scope="module")
def kernel():
    return resolve()


@pytest.fixture(scope="module")
def accel(kernel):
    return choose(None, kernel.boot_path)


def run(kernel, accel, mode: str, **kw):
    run_dir = paths.new_run_dir(f"test-{mode}")
    return run_dir, lambda: boot(
        kw.pop("topology", TINY), kernel, accel, run_dir, {"mode": mode}, **kw
    )


def assert_clean(run_dir: Path) -> None:
    assert not qemu_pids_for(str(run_dir)), "QEMU left running"
    leftovers = {p.name for p in run_dir.iterdir()} - RUN_FILES - {"agent-traceback.txt"}
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_clean_probe_streams_channel_and_console(kernel, accel):
    run_dir, go = run(kernel, accel, "probe")
    done = go()
    assert done.result.end == lifecycle.POWEROFF
    kinds = [m["kind"] for m in done.result.messages]
    assert kinds == [wire.HELLO, wire.TOPOLOGY, wire.SCHED_EXT, wire.DONE]
    lines = (run_dir / "channel.jsonl").read_text().splitlines()
    assert [wire.decode(ln)["kind"] for ln in lines] == kinds
    assert "ktstr-agent: done" in (run_dir / "console.log").read_text()
    # QEMU's threads were read while it ran: they ran, and waited for a host CPU some share
    wait = done.result.host_wait
    assert wait is not None and wait.run_s > 0 and 0 <= wait.wait_share < 1, wait
    assert_clean(run_dir)


def test_agent_exception_reported_with_traceback(kernel, accel):
    run_dir, go = run(kernel, accel, "fail")
    with pytest.raises(VmError, match="the guest agent failed: RuntimeError") as err:
        go()
    assert "agent-traceback.txt" in str(err.value)
    trace = (run_dir / "agent-traceback.txt").read_text()
    assert "Traceback" in trace and "debug mode 'fail'" in trace
    assert "Kernel panic" not in (run_dir / "console.log").read_text()
    assert_clean(run_dir)


def test_guest_panic_classified(kernel, accel):
    run_dir, go = run(kernel, accel, "panic")
    with pytest.raises(VmError, match="panicked") as err:
        go()
    assert "Kernel panic - not syncing" in str(err.value)
    assert "console.log" in str(err.value)
    assert_clean(run_dir)


def test_timeout_kills_qemu(kernel, accel):
    run_dir, go = run(kernel, accel, "hang", timeout_s=15)
    with pytest.raises(VmError, match="timed out"):
        go()
    assert_clean(run_dir)


def test_qemu_failure_carries_its_stderr(kernel, accel, monkeypatch):
    huge = Topology(1, 1, 1, 1, memory_mib=64 * 2**20)  # 64 TiB of guest RAM
    # with the host's free memory unknown, ktstr does not refuse it first: QEMU fails
    monkeypatch.setattr("ktstr.vm.boot.mem_available_mib", lambda: 0)
    run_dir, go = run(kernel, accel, "probe", topology=huge)
    with pytest.raises(VmError, match="QEMU failed") as err:
        go()
    assert "qemu.stderr.log" in str(err.value)
    assert (run_dir / "qemu.stderr.log").read_text().strip()
    assert_clean(run_dir)


def test_sigint_stops_the_vm_and_keeps_logs(tmp_path):
    env = dict(os.environ, KTSTR_RUNS_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ktstr.cli", "vm", "probe", "-t", "1n2l1c1t"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def started() -> Path | None:
        found = [p for p in tmp_path.glob("*/console.log") if p.stat().st_size > 0]
        return found[0] if found else None

    console = wait_until(started, "console output from the VM", proc)
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert console.read_text()
    assert_clean(console.parent)
