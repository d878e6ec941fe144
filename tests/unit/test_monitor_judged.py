"""The monitor's settings, its BTF renderer, its checks and its dump printer, without a VM."""

import json
import struct
from types import SimpleNamespace

import pytest

from ktstr.checks.monitor import monitor
from ktstr.checks.thresholds import DEFAULTS
from ktstr.errors import ConfigError, KernelError
from ktstr.monitor import btf, settings
from ktstr.results import dump_text
from tests.helpers import ktstr

KERNEL = SimpleNamespace(release="9.9.9-test", boot_path="/nonexistent/vmlinux")


def test_the_monitor_is_on_by_default_only_when_debug_info_is_at_hand(monkeypatch):
    monkeypatch.delenv(settings.ENV, raising=False)

    def missing(release, image):
        raise KernelError("kernel 9.9.9-test has no debug info", "fetch it")

    monkeypatch.setattr(settings.debuginfo, "find", missing)
    plan = settings.resolve(None, KERNEL)  # type: ignore[arg-type]
    assert plan.period_s is None and "off by default without debug info" in plan.off
    assert "has no debug info" in plan.off
    # Asked for explicitly, it fetches first; a failed fetch leaves it off, saying why.
    fetched = []

    def refuse(kernel):
        fetched.append(kernel.release)
        raise ConfigError("no mirror", "fetch by hand")

    monkeypatch.setattr(settings, "fetch_for", refuse)
    plan = settings.resolve(settings.MonitorSettings(0.2, enforce=True), KERNEL)  # type: ignore[arg-type]
    assert fetched == ["9.9.9-test"] and plan.period_s is None and plan.enforce
    assert plan.off.startswith("no mirror")
    monkeypatch.setattr(
        settings.debuginfo, "find", lambda r, i: SimpleNamespace(path="/dbg/vmlinux")
    )
    assert settings.resolve(None, KERNEL).period_s == settings.DEFAULT_PERIOD_S  # type: ignore[arg-type]
    assert settings.resolve(settings.MonitorSettings(0.5), KERNEL).period_s == 0.5  # type: ignore[arg-type]
    assert "off" in settings.resolve(settings.MonitorSettings(0.0), KERNEL).off  # type: ignore[arg-type]
    monkeypatch.setenv(settings.ENV, "0")
    assert settings.resolve(None, KERNEL).period_s is None  # type: ignore[arg-type]


def test_monitor_period_option_refuses_nonsense_in_one_sentence():
    proc = ktstr("run", "steady", "--monitor-period", "0.001")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--monitor-period 0.001 is not 0 (off) or a period" in proc.stderr


def _blob(types: list[bytes], strings: bytes) -> bytes:
    body = b"".join(types)
    return (
        struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(body), len(body), len(strings))
        + body
        + strings
    )


def _type(name: int, kind: int, vlen: int, size_or_type: int, *words: int, kflag: int = 0) -> bytes:
    info = (kflag << 31) | (kind << 24) | vlen
    return struct.pack(f"<III{len(words)}I", name, info, size_or_type, *words)


def test_btf_renders_a_data_section_field_by_field():
    strings = b"\0u32\0char\0cfg\0nr\0name\0.bss\0mode\0IDLE\0BUSY\0mode_e\0int\0"
    off = {s: strings.index(s.encode() + b"\0") for s in ("u32", "char", "cfg", "nr", "name",
                                                          ".bss", "mode", "IDLE", "BUSY",
                                                          "mode_e", "int")}  # fmt: skip
    types = [
        _type(off["u32"], btf.INT, 0, 4, 32),  # 1: u32
        _type(off["char"], btf.INT, 0, 1, (2 << 24) | 8),  # 2: char
        _type(0, btf.ARRAY, 0, 0, 2, 1, 8),  # 3: char[8]
        _type(off["mode_e"], btf.ENUM, 2, 4, off["IDLE"], 0, off["BUSY"], 1),  # 4: enum
        # 5: struct cfg { u32 nr; char name[8]; enum mode_e mode; }
        _type(
            off["cfg"], btf.STRUCT, 3, 16, off["nr"], 1, 0, off["name"], 3, 32, off["mode"], 4, 96
        ),
        _type(off["cfg"], btf.VAR, 0, 5, 1),  # 6: var cfg
        _type(off["int"], btf.INT, 0, 4, (1 << 24) | 32),  # 7: int
        _type(off["mode"], btf.VAR, 0, 7, 1),  # 8: var mode (an int)
        _type(off[".bss"], btf.DATASEC, 2, 20, 6, 0, 16, 8, 16, 4),  # 9: .bss
    ]
    parsed = btf.Btf(_blob(types, strings))
    data = struct.pack("<I8sI", 7, b"qmap\0\0\0\0", 1) + struct.pack("<i", -3)
    assert parsed.is_datasec(9) and not parsed.is_datasec(5)
    assert parsed.datasec(9, data) == {
        "cfg": {"nr": 7, "name": "qmap", "mode": "BUSY"},
        "mode": -3,
    }
    with pytest.raises(ValueError):
        btf.Btf(b"\x00" * 40)
    with pytest.raises(ValueError):  # a type that claims more members than the blob holds
        btf.Btf(_blob([_type(0, btf.STRUCT, 60000, 4)], b"\0"))


def _record(nr_running, local=None, clock=None, events=None, enforce=False):
    n = len(nr_running)
    return {
        "monitor": {
            "samples": n,
            "enforce": enforce,
            "series": {
                "t": [round(0.1 * i, 1) for i in range(n)],
                "nr_running": nr_running,
                "local_dsq": local or [[0] * len(nr_running[0])] * n,
                "clock": clock or [[1000 * (i + 1)] * len(nr_running[0]) for i in range(n)],
                "events": events or [{}] * n,
            },
        }
    }


def test_monitor_checks_need_a_condition_to_last_and_only_report_by_default():
    busy = [[8, 1]] * 6
    blip = [[2, 2]] * 3 + [[8, 1]] * 4 + [[2, 2]] * 3  # four samples: shorter than five
    (finding,) = monitor(_record(busy), DEFAULTS)
    assert finding.kind == "imbalanced" and finding.status == "pass"
    assert finding.message.startswith("report-only") and finding.value == 8.0
    assert [f.kind for f in monitor(_record(blip), DEFAULTS)] == ["ok"]
    (enforced,) = monitor(_record(busy, enforce=True), DEFAULTS)
    assert enforced.status == "fail"
    (by_threshold,) = monitor(_record(busy), {**DEFAULTS, "monitor.enforce": 1.0})
    assert by_threshold.status == "fail"
    # Fewer runnable tasks than CPUs: idle CPUs are not an imbalance.
    assert [f.kind for f in monitor(_record([[1, 0]] * 10), DEFAULTS)] == ["ok"]


def test_monitor_checks_see_deep_local_dsqs_stuck_clocks_and_event_storms():
    n = 8
    deep = _record([[2, 2]] * n, local=[[0, 60]] * n, enforce=True)
    assert [(f.kind, f.cpu) for f in monitor(deep, DEFAULTS)] == [("deep_local_dsq", 1)]
    stuck = _record([[1, 1]] * n, clock=[[5, 1000 * i] for i in range(n)], enforce=True)
    assert [(f.kind, f.cpu) for f in monitor(stuck, DEFAULTS)] == [("rq_clock_stuck", 0)]
    # 30 fallbacks per 0.1 s = 300/s; keep-last at 5 per 0.1 s = 50/s stays under 100/s.
    events = [{"SCX_EV_SELECT_CPU_FALLBACK": 30 * i, "SCX_EV_DISPATCH_KEEP_LAST": 5 * i}
              for i in range(n)]  # fmt: skip
    (storm,) = monitor(_record([[2, 2]] * n, events=events, enforce=True), DEFAULTS)
    assert storm.kind == "fallback_rate" and storm.value == pytest.approx(300, rel=0.01)
    # A counter going back (a new scheduler) is no negative rate and no storm.
    reset = [{"SCX_EV_SELECT_CPU_FALLBACK": v} for v in (900, 0, 1, 2, 3, 4, 5, 6)]
    assert [f.kind for f in monitor(_record([[2, 2]] * n, events=reset), DEFAULTS)] == ["ok"]


def test_monitor_check_skips_with_the_reason_and_never_fails_a_run_without_samples():
    off = {"monitor": {"samples": 0, "unavailable": "off by default without debug info: x"}}
    (finding,) = monitor(off, DEFAULTS)
    assert finding.status == "skip" and "off by default without debug info" in finding.message
    assert monitor({}, DEFAULTS) == []  # a record from before the monitor


DUMP = {
    "trigger": {"reason": "a stall is developing", "cpu": 1, "pid": 131, "comm": "ktstr-\x1b[2J",
                "ms": 2600.0, "watchdog_timeout_jiffies": 1250, "at_s": 4.2},  # fmt: skip
    "hz": 250,
    "paused": True,
    "took_s": 0.2,
    "cpus": [{"cpu": 1, "nr_running": 2, "scx_nr_running": 2, "local_dsq_nr": 0,
              "curr_pid": 0, "curr_comm": "swapper/1", "curr_class": "idle"}],  # fmt: skip
    "runnable": {"1": [{"pid": 131, "comm": "ktstr-worker", "class": "ext", "dsq": None,
                        "runnable_for_ms": 2600.0, "slice_ns": 0, "dsq_vtime": 0}]},  # fmt: skip
    "dsqs": [{"kind": "local", "cpu": 1, "id": 0x8000000000000002, "nr": 0, "tasks": []}],
    "maps": [{"id": 7, "name": "scx_qmap.bss", "type": "ARRAY", "key_size": 4,
              "value_size": 64, "max_entries": 1, "variables": {"nr_enqueued": 12}},
             {"id": 9, "name": "task_ctx_stor", "type": "TASK_STORAGE", "key_size": 4,
              "value_size": 16, "max_entries": 0,
              "entries_not_read": "TASK_STORAGE maps are listed without their entries"}],
    "exit": {"kind": "SCX_EXIT_ERROR_STALL", "reason": "runnable task stall",
             "msg": "ktstr-worker[131] failed to run for 5.012s", "dump": "line one\nline two"},
}  # fmt: skip


def test_ktstr_dump_prints_what_waited_where_the_maps_and_the_exit(tmp_path):
    (tmp_path / dump_text.FILE).write_text(json.dumps(DUMP))
    proc = ktstr("dump", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "a stall is developing" in out and "\x1b" not in out  # guest text is escaped
    assert "131 ktstr-worker [ext] on no DSQ (held by the BPF scheduler) runnable 2600 ms" in out
    assert "local CPU 1 dsq LOCAL: 0 queued" in out
    assert "scx_qmap.bss (id 7, ARRAY" in out and '"nr_enqueued": 12' in out
    assert "scheduler exit: SCX_EXIT_ERROR_STALL (runnable task stall)" in out
    assert "line two" in out
    (tmp_path / "clean").mkdir()
    missing = ktstr("dump", str(tmp_path / "clean"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no failure dump" in missing.stderr
    nowhere = ktstr("dump", str(tmp_path / "nothing"))
    assert nowhere.returncode == 2 and "does not exist; pass a run directory" in nowhere.stderr


def test_the_report_plots_the_monitor_series_and_shows_the_dump():
    from ktstr.results import report

    events = [{"SCX_EV_SELECT_CPU_FALLBACK": 3 * i} for i in range(6)]
    record = _record([[2, 1]] * 6, local=[[0, 3]] * 6, events=events)
    record["monitor"]["series"]["dsqs"] = [{"0": i} for i in range(6)]
    images = report.plots(record)
    assert {"monitor_runnable", "monitor_dsqs", "monitor_events"} <= set(images)
    record["_failure_dump"] = dump_text.render(DUMP)
    page = report.run_section(record, {})
    assert "<h3>failure dump</h3>" in page and "scx_qmap.bss" in page


def test_the_dump_pauses_and_resumes_the_vm_over_qmp_while_the_monitor_waits():
    import socket
    import threading

    from ktstr.vm.qmp import Monitor, QmpError
    from tests.helpers import HANG_GUARD_S, qmp_commands

    seen: list[str] = []

    def qemu(sock):
        sock.sendall(b'{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}\r\n')
        for cmd in qmp_commands(sock):
            seen.append(cmd["execute"])
            reply = {"return": [] if cmd["execute"] == "query-blockstats" else {}}
            if "id" in cmd:
                reply["id"] = cmd["id"]
            sock.sendall(json.dumps(reply).encode() + b"\r\n")
            if cmd["execute"] == "cont":  # the guest then powers off
                sock.sendall(b'{"event": "SHUTDOWN", "data": {"reason": "guest-shutdown"}}\r\n')
            if cmd["execute"] == "quit":
                break
        sock.close()

    ours, theirs = socket.socketpair()
    fake = threading.Thread(target=qemu, args=(theirs,))
    fake.start()
    monitor = Monitor(ours)
    monitor.start()
    monitor.command("stop")
    monitor.command("cont")
    monitor.join(HANG_GUARD_S)
    fake.join(HANG_GUARD_S)
    assert seen == ["qmp_capabilities", "stop", "cont", "query-blockstats", "quit"]
    assert monitor.quit_sent and monitor.error is None
    with pytest.raises(QmpError, match="not connected"):
        monitor.command("stop", timeout_s=0.1)  # QEMU is gone: one sentence, no hang
