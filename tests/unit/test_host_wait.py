"""QEMU's wait for a host CPU: read from /proc, kept in the record, judged."""

from pathlib import Path

from ktstr.checks import judge
from ktstr.vm.host_wait import HostWait


def fake_proc(root: Path, pid: int, threads: dict[int, str]) -> None:
    for tid, text in threads.items():
        task = root / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "schedstat").write_text(text)


def test_threads_are_summed_and_a_gone_process_keeps_the_last_reading(tmp_path):
    fake_proc(tmp_path, 42, {42: "3000000000 1000000000 10\n", 43: "1000000000 0 5\n", 44: "x"})
    reading = HostWait(42, tmp_path)
    reading.sample()
    assert (reading.run_s, reading.wait_s) == (4.0, 1.0)  # the unreadable thread is skipped
    assert reading.wait_share == 0.2
    HostWait(7, tmp_path).sample()  # no such process: nothing read, no error
    gone = HostWait(42, tmp_path / "elsewhere")
    gone.run_s, gone.wait_s = 2.0, 2.0
    gone.sample()
    assert gone.wait_share == 0.5


def record(share: float | None, total_s: float = 20.0) -> dict:
    rec = {
        "timings_s": {"total": total_s},
        "duration_s": 6.0,
        "workers": [],
        "console": [],
        "observed_topology": {"cpus": 4},
        "events": [],
    }
    if share is not None:
        rec["emulator"] = {"run_s": 10.0, "wait_s": 10.0 * share, "wait_share": share}
    return rec


def emulator(rec: dict, limit: float = 0.5) -> list:
    th = {"emulator.max_wait_share": limit}
    return [f for f in judge(rec, th).findings if f.check == "emulator"]


def test_a_busy_host_makes_the_run_inconclusive_with_the_fix():
    assert emulator(record(0.62), limit=0.0) == []  # off by default
    (f,) = emulator(record(0.62))
    assert f.status == "inconclusive" and f.kind == "host_busy"
    assert "QEMU waited for a host CPU 62% of the time" in f.message
    assert "run fewer VMs at once (-j) or on a quieter host" in f.message
    assert emulator(record(0.1)) == [] and emulator(record(None)) == []
    (tighter,) = emulator(record(0.3), limit=0.25)
    assert tighter.status == "inconclusive"
    # a reading that covers a small part of the VM's life (an interrupted run) is not used
    assert emulator(record(0.62, total_s=60.0)) == []


def test_timing_failures_of_a_busy_host_say_how_long_qemu_waited():
    stuck = {
        "id": 0,
        "cgroup_path": "cg_0",
        "work": "spin",
        "units": 10,
        "start_s": 0.0,
        "end_s": 6.0,
        "cpu_time_ns": 1_000_000_000,
        "gaps": [[3.0, 1.0, 0, 0.0, 0, 1]],
        "residency": [[0.0, 0]],
        "error": None,
    }
    rec = {**record(0.4), "workers": [stuck]}
    (f,) = [f for f in judge(rec).findings if f.check == "not_stuck"]
    assert f.status == "fail" and "QEMU waited for a host CPU 40% of the time" in f.message
    (f,) = [
        f
        for f in judge({**rec, **record(0.05), "workers": [stuck]}).findings
        if f.check == "not_stuck"
    ]
    assert f.status == "fail" and "QEMU waited" not in f.message  # a quiet host: no note
