"""What a hostile or broken guest can send, faked only at the stream boundary.

The channel is a real socketpair and the console a real pipe, as QEMU
gives them; only the guest's side of them is this test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ktstr import wire
from ktstr.errors import VmError
from ktstr.text import escape, escape_bytes
from ktstr.topology import Topology
from ktstr.vm import guest_messages, lifecycle
from ktstr.vm.boot import check_end, planned_workers
from tests.helpers import HANG_GUARD_S, wait_until

SMALL = lifecycle.StreamLimits(
    channel_line=4096, channel_total=1 << 20, console_line=256, console_total=64 * 1024
)


def line(kind: str, **payload) -> bytes:
    return wire.encode(kind, **payload)


def raw(obj: dict) -> bytes:
    """A line as a guest that bypasses wire.encode could write it: infinity as 1e999."""
    text = json.dumps({"v": wire.VERSION, "t": 1.0, **obj}).replace("Infinity", "1e999")
    return (text + "\n").encode()


def message(obj: dict) -> dict:
    """A decoded message as validate sees it (NaN cannot pass wire.decode; validate refuses it
    anyway, for callers that build messages otherwise)."""
    return {"v": wire.VERSION, "t": 1.0, **obj}


def feed(tmp_path: Path, chunks: list[bytes], limits=SMALL) -> lifecycle._Channel:
    """Run the channel thread over a socketpair fed with ``chunks``; return it when done."""
    host, guest = socket.socketpair()
    stop = threading.Event()
    channel = lifecycle._Channel(
        host, tmp_path / "channel.jsonl", time.monotonic(), None, limits, stop
    )
    channel.start()

    def write() -> None:
        try:
            for chunk in chunks:
                guest.sendall(chunk)
        except OSError:
            pass  # the host stopped reading (flooded) and went away
        finally:
            guest.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    channel.join(HANG_GUARD_S)
    assert not channel.is_alive(), "the channel thread hung"
    host.close()
    writer.join(HANG_GUARD_S)
    return channel


def kinds(channel) -> list[str]:
    return [m["kind"] for m in channel.messages]


def test_over_long_line_is_counted_skipped_and_not_held(tmp_path):
    huge = b'{"v":1,"kind":"hello","junk":"' + b"x" * 100_000 + b'"}\n'
    ch = feed(tmp_path, [line(wire.HELLO, release="a"), huge, line(wire.DONE, uptime_s=1.0)])
    assert kinds(ch) == [wire.HELLO, wire.DONE]
    assert ch.bad.count == 1
    (sample,) = ch.bad.first
    assert sample.startswith("line over 4096 bytes") and len(sample) < 400
    assert b"xxxx" * 1000 not in (tmp_path / "channel.jsonl").read_bytes()


def test_an_over_long_line_split_across_many_writes(tmp_path):
    pieces = [b'{"v":1,"kind":"hello",'] + [b"y" * 1000] * 50 + [b"\n"]
    ch = feed(tmp_path, pieces + [line(wire.DONE)])
    assert kinds(ch) == [wire.DONE] and ch.bad.count == 1


def test_flood_past_the_total_cap_stops_reading(tmp_path):
    flood = [line(wire.KMSG, text="z" * 1000, at_s=0.0)] * 5000  # ~5 MB against a 1 MiB cap
    ch = feed(tmp_path, [line(wire.HELLO)] + flood)
    assert ch.flooded and "the guest flooded the channel" in ch.flooded
    assert ch.stop.is_set()
    assert ch.lines.total <= SMALL.channel_total + 64 * 1024
    collected = sum(len(json.dumps(m)) for m in ch.messages)
    assert collected < SMALL.channel_total * 2  # bounded by the cap, not by what was sent
    assert (tmp_path / "channel.jsonl").stat().st_size <= SMALL.channel_total


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (b'{"v":1,"kind":"hello","t":1,"x":"\xff\xfe"}\n', "not UTF-8"),
        (b'{"v":1,"kind":"hello","t":1,"n":' + b"9" * 5000 + b"}\n", "not JSON"),
        (b'{"v":1,"kind":"hello","t":NaN}\n', "not JSON"),
        (b"\x1b[2J\x1b]0;pwned\x07\n", "not JSON"),
        (b'{"v":2,"kind":"hello"}\n', "schema version"),
    ],
)
def test_lines_that_are_no_message_are_counted_and_the_thread_goes_on(tmp_path, bad, why):
    # The deep line is over the small line cap: this limit lets it reach the parser.
    limits = lifecycle.StreamLimits(channel_line=1 << 20)
    ch = feed(tmp_path, [line(wire.HELLO), bad, line(wire.DONE)], limits)
    assert kinds(ch) == [wire.HELLO, wire.DONE]
    assert ch.bad.count == 1 and why in ch.bad.first[0]
    assert "\x1b" not in ch.bad.first[0] and len(ch.bad.first[0]) < 400


def test_bad_line_samples_are_bounded_and_the_count_exact(tmp_path):
    ch = feed(tmp_path, [b"garbage %d\n" % i for i in range(500)] + [line(wire.DONE)])
    assert ch.bad.count == 500 and len(ch.bad.first) == lifecycle.SAMPLES_KEPT
    assert kinds(ch) == [wire.DONE]


def test_an_exception_handling_one_line_does_not_end_the_thread(tmp_path, monkeypatch):
    calls = []

    def broken(msg):
        calls.append(msg["kind"])
        if msg["kind"] == wire.HELLO:
            raise RuntimeError("host bug")

    host, guest = socket.socketpair()
    ch = lifecycle._Channel(host, tmp_path / "c.jsonl", time.monotonic(), broken, SMALL)
    ch.start()
    guest.sendall(line(wire.HELLO) + line(wire.DONE))
    guest.close()
    ch.join(HANG_GUARD_S)
    assert calls == [wire.HELLO, wire.DONE] and ch.bad.count == 1
    assert "host error RuntimeError" in ch.bad.first[0]


# One wrong message per kind: each must be rejected with a reason naming the field.
WRONG = [
    ({"kind": "hello", "uptime_s": "soon"}, "uptime_s: expected a number"),
    ({"kind": "topology", "cpus": 4, "numa_nodes": [[0]], "llcs": [[0]]}, "smt_siblings: missing"),
    (
        {"kind": "topology", "cpus": 1, "numa_nodes": [[-1]], "llcs": [], "smt_siblings": []},
        "numa_nodes[0][0]: -1 is outside",
    ),
    ({"kind": "sched_ext", "present": "yes"}, "present: expected true/false"),
    (
        {"kind": "error", "message": "x", "traceback": ["not", "text"]},
        "traceback: expected a string",
    ),
    ({"kind": "done", "uptime_s": -1}, "uptime_s: -1 is outside"),
    ({"kind": "calibration", "loop_s": 0}, "loop_s: 0 is outside (0"),
    ({"kind": "calibration", "loop_s": float("inf")}, "loop_s: inf is not finite"),
    ({"kind": "event", "at_s": 1.0, "op": "spawn", "path": "cg"}, "ids: missing"),
    ({"kind": "event", "at_s": float("nan"), "op": "start"}, "at_s: nan is not finite"),
    ({"kind": "sample", "at_s": 1.0, "util": {"cpu0": 0.5}}, "util[cpu0]: key is not a CPU"),
    ({"kind": "sample", "at_s": 1.0, "steal": {"0": -5}}, "steal[0]: -5 is outside"),
    ({"kind": "worker", "id": "0"}, "id: expected an integer, got str"),
    ({"kind": "worker", "id": 1, "gaps": [[0.1, 2.0]]}, "gaps[0]: 2 items"),
    ({"kind": "worker", "id": 1, "units": -3}, "units: -3 is outside"),
    ({"kind": "worker", "id": 1, "wake": {"n": 1, "p50_us": 1}}, "wake.p99_us: missing"),
    ({"kind": "worker", "id": 1, "residency": [[0.0, 9999]]}, "residency[0][1]: 9999 is outside"),
    ({"kind": "worker", "id": 1, "units": True}, "units: expected an integer, got bool"),
    ({"kind": "worker", "id": 1, "io": {"ops": {}, "bytes": {}}}, "io.iops: missing"),
    ({"kind": "scenario_end", "at_s": 1.0, "skipped": 5}, "skipped: expected a string"),
    ({"kind": "sched", "event": "state", "at_s": 1.0}, "state: missing"),
    ({"kind": "sched", "event": "exited", "at_s": 1.0, "code": 2**70}, "wider than 64 bits"),
    ({"kind": "sched_out", "at_s": 1.0, "line": None}, "line: expected a string, got null"),
    ({"kind": "kmsg", "text": "x", "level": 9}, "level: 9 is outside [0, 7]"),
    ({"kind": "disks", "disks": [{"serial": "s", "name": "vda"}]}, "disks[0].sectors: missing"),
    ({"kind": "disk_stats", "disks": [{"serial": "s", "stat_end": {"x": 1.5}}]}, "expected an int"),
    ({"kind": "exec_out", "stream": "stdout", "data": 7}, "data: expected a string"),
    ({"kind": "exec_end", "timed_out": False, "elapsed_s": 1.0, "code": 300}, "code: 300 is"),
    ({"kind": "payload_out", "id": 0, "stream": "stdout"}, "data: missing"),
    ({"kind": "payload_end", "id": 0, "at_s": 1.0, "elapsed_s": 1.0, "code": -1}, "code: -1 is"),
    ({"kind": "verifier", "loads": [{"log": "x"}], "live": []}, "loads[0].log_bytes: missing"),
]


def test_every_kind_has_a_wrong_message_below():
    assert {obj["kind"] for obj, _ in WRONG} == wire.KINDS


@pytest.mark.parametrize(
    ("obj", "why"), WRONG, ids=[f"{o['kind']}-{i}" for i, (o, _) in enumerate(WRONG)]
)
def test_wrong_messages_are_rejected_with_a_reason(obj, why):
    reason = guest_messages.validate(message(obj))
    assert reason is not None and why in reason, reason
    assert reason.startswith(obj["kind"] + ": ") and "\n" not in reason


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ({"kind": "hello", "t": "now"}, "t: expected a number"),
        ({"kind": "hello", "t": None}, "t: expected a number"),
        ({"kind": "hello", "t": 1e999}, "t: inf is not finite"),
        ({"kind": "hello", "extra": {"deep": [1e999]}}, "extra.deep[0]: inf is not finite"),
        ({"kind": "hello", "extra": -(2**65)}, "wider than 64 bits"),
        ({"kind": "hello", "extra": "\ud800"}, "lone surrogate"),
        ({"kind": "hello", "extra": "x" * (guest_messages.MAX_STRING + 1)}, "characters (at most"),
    ],
)
def test_rules_for_every_value_and_the_envelope(obj, why):
    reason = guest_messages.validate(message(obj))
    assert reason is not None and why in reason, reason


def test_infinity_written_as_a_huge_literal_passes_the_parser_but_not_validation():
    msg = wire.decode(b'{"v":1,"kind":"done","t":1,"uptime_s":1e999}')
    assert guest_messages.validate(msg) == "done: uptime_s: inf is not finite"


def test_nesting_within_the_parser_but_beyond_the_limit_is_rejected():
    deep = b'{"v":1,"kind":"hello","t":1,"x":' + b"[" * 500 + b"]" * 500 + b"}"
    reason = guest_messages.validate(wire.decode(deep))
    assert reason and "nested deeper than" in reason


def test_what_a_real_guest_sends_is_accepted():
    layout = Topology.parse("2n2l2c2t").layout()
    cpus = range(layout["cpus"])
    good = [
        line(
            wire.HELLO,
            release="7.2",
            cmdline="console=ttyS0",
            uptime_s=1.5,
            python="3.11.7",
            mount_failures=[],
            boot_marks={"init_started": 0.9},
            agent_start_uptime_s=1.0,
            cgroup_controllers=["cpu", "cpuset"],
        ),
        line(wire.TOPOLOGY, **layout, numa_distances=[[10, 20], [20, 10]], packages=2),
        line(
            wire.SCHED_EXT,
            present=True,
            state="disabled",
            switch_all=0,
            nr_rejected=0,
            hotplug_seq=0,
            enable_seq=0,
        ),
        line(
            wire.DISKS,
            disks=[
                {
                    "index": 0,
                    "serial": "ktstr0",
                    "name": "vda",
                    "device": "/dev/vda",
                    "sectors": 2048,
                    "read_only": False,
                    "logical_block_size": 512,
                    "mount": None,
                    "stat_start": {"read_ios": 3},
                }
            ],
        ),
        line(wire.CALIBRATION, loop_s=0.004, loops=200_000),
        line(wire.EVENT, at_s=-0.3, op="add_cgroup", path="cg_0", cpus=[0, 1]),
        line(wire.EVENT, at_s=-0.29, op="spawn", path="cg_0", ids=[0, 1], affinity=None),
        line(wire.EVENT, at_s=0.0, op="start", path=None),
        line(
            wire.SAMPLE,
            at_s=0.5,
            util={str(c): 0.25 for c in cpus},
            steal={str(c): 0 for c in cpus},
            schedstat={str(c): [1, 2, 3] for c in cpus},
            running=2,
            disks={"vda": [1, 2, 0, 0]},
        ),
        line(wire.SCHED, event="started", at_s=0.0, pid=99, argv=["/x", "-v"]),
        line(
            wire.SCHED,
            event="state",
            at_s=0.1,
            state="enabled",
            ops="simple",
            enable_seq="1",
            nr_rejected="0",
        ),
        line(wire.SCHED, event="attached", at_s=0.2, ops="simple", events={"SCX_EV_X": -1}),
        line(wire.SCHED_OUTPUT, line="local=3 global=4", at_s=1.0),
        line(
            wire.KMSG,
            text='sched_ext: BPF scheduler "simple" enabled',
            level=6,
            usec=123456,
            mono=5.0,
            at_s=0.3,
        ),
        line(
            wire.WORKER,
            id=0,
            work="spin",
            pid=120,
            units=500,
            start_s=0.0,
            end_s=6.0,
            gaps=[[0.05, 1.0, 2], [0.04, 2.0, None]],
            cpus={"0": 400, "1": 100},
            migrations=3,
            residency=[[0.0, 0], [1.0, 1]],
            progress=[[0.0, 0, 0], [0.1, 5, None]],
            wake={"n": 3, "p50_us": 10.0, "p99_us": 20.0, "max_us": 30.0, "cdf_us": [1.0] * 50},
            cgroup="/ktstr/cg_0",
            error=None,
            policy="normal",
            rt_priority=0,
            nice=0,
            cpu_time_ns=5_000_000_000,
            wait_ns=10,
            timeslices=100,
            cgroup_path="cg_0",
            killed=False,
            io={
                "device": "/dev/vda",
                "region": [0, 4096],
                "ops": {"read": 1, "write": 0, "flush": 0},
                "bytes": {"read": 4096, "write": 0},
                "errors": 0,
                "error_kinds": {},
                "iops": 1.0,
                "written": None,
                "lat_us": {"p50": 1.0, "p99": 2.0, "max": 3.0},
            },
        ),
        line(
            wire.WORKER,
            id=1,
            error="no result (killed or crashed)",
            cgroup_path="cg_0",
            killed=True,
        ),
        line(wire.SCENARIO_END, at_s=6.2),
        line(
            wire.DISK_STATS,
            disks=[{"serial": "ktstr0", "name": "vda", "stat_end": {"read_ios": 9}}],
        ),
        line(wire.ERROR, message="RuntimeError('x')", traceback="Traceback ...\n"),
        line(wire.DONE, uptime_s=9.0),
    ]
    for ln in good:
        msg = wire.decode(ln)
        assert guest_messages.validate(msg) is None, (msg["kind"], guest_messages.validate(msg))


def test_rejected_messages_are_counted_with_reasons_and_good_ones_still_arrive(tmp_path):
    bad = [raw({"kind": "worker", "id": 1, "units": float("inf")})] * 30
    ch = feed(tmp_path, [line(wire.HELLO)] + bad + [line(wire.DONE)])
    assert kinds(ch) == [wire.HELLO, wire.DONE]
    assert ch.rejected.count == 30 and len(ch.rejected.first) == lifecycle.SAMPLES_KEPT
    assert ch.rejected.first[0] == "worker: units: inf is not finite"
    assert ch.bad.count == 0


def test_terminal_escapes_in_text_fields_reach_the_record_raw_and_the_screen_escaped(tmp_path):
    evil = "\x1b[2J\x1b]0;owned\x07\rPASS\u202e"
    ch = feed(tmp_path, [line(wire.ERROR, message=evil, traceback=evil), line(wire.DONE)])
    assert ch.messages[0]["message"] == evil  # evidence kept as sent
    result = lifecycle.VmResult("poweroff", 0, tmp_path, messages=ch.messages)
    with pytest.raises(VmError) as err:
        check_end(result)
    shown = str(err.value)
    assert "\x1b" not in shown and "\r" not in shown and "\u202e" not in shown
    assert "\\x1b[2J" in shown and "\\u202e" in shown


def test_escape():
    assert escape("plain text, été") == "plain text, été"
    assert escape("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert escape("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert escape("\x7f\x85\u200b\u202e\ud800") == "\\x7f\\x85\\u200b\\u202e\\ud800"
    assert escape("\U000e0001") == "\\U000e0001"
    assert escape("one\r\ntwo\tx\rhide", multiline=True) == "one\ntwo\tx\\rhide"
    assert escape("abcdef", limit=3) == "abc...[3 more chars]"
    assert escape_bytes(b"ok\xff\x1b\n") == "ok\\xff\\x1b\\n"
    assert escape_bytes(b"x" * 10, limit=4) == "xxxx...[6 more bytes]"


def test_console_caps_cut_long_lines_and_stop_a_flood(tmp_path):
    read, write = os.pipe()
    stream = os.fdopen(read, "rb")
    stop = threading.Event()
    console = lifecycle._Console(stream, tmp_path / "console.log", SMALL, stop)
    console.start()
    os.write(write, b"boot\r\n" + b"L" * 1000 + b"\nKernel panic - not syncing: x\n")
    time.sleep(0.2)
    assert not stop.is_set()
    try:
        for _ in range(1000):
            os.write(write, b"F" * 200 + b"\n")
    except BrokenPipeError:
        pass
    console.join(HANG_GUARD_S)
    os.close(write)
    assert stop.is_set() and console.flooded and "console" in console.flooded
    assert console.long_lines == 1 and console.panic_line.startswith("Kernel panic")
    text = (tmp_path / "console.log").read_bytes()
    assert len(text) <= SMALL.console_total + 100
    assert b"L" * 256 + b" [ktstr: line cut here, 744 more bytes]\n" in text


def test_tail_lines_reads_from_the_end(tmp_path):
    path = tmp_path / "console.log"
    path.write_bytes(b"".join(b"line %d\r\n" % i for i in range(100_000)) + b"x\x0cy\xff")
    tail = lifecycle.tail_lines(path, 3, 1000)
    assert tail == ["line 99998", "line 99999", "x\x0cy\ufffd"]
    few = lifecycle.tail_lines(path, 1000, 50)  # the window cuts the first line: dropped
    assert few[0].startswith("line ") and len(few) < 10
    assert lifecycle.tail_lines(tmp_path / "missing", 5, 100) == []
    path.write_text("a\nb\n")
    assert lifecycle.tail_lines(path, 5, 100) == ["a", "b"]


def test_stream_limits_grow_with_the_run():
    small = lifecycle.StreamLimits.for_run(60)
    big = lifecycle.StreamLimits.for_run(1200, workers=500)
    assert small.channel_total >= 64 * lifecycle.MiB
    # a 252-vCPU sample (~15 KB) twice a second for the whole timeout fits twice over
    assert big.channel_total > 2 * 2 * 15_000 * 1200 + 500 * 600_000
    plan = {
        "steps": [
            {
                "ops": [{"op": "spawn", "ids": [0, 1]}],
                "repeats": [{"ops": [{"op": "spawn", "ids": [2]}]}],
            }
        ]
    }
    assert planned_workers(plan) == 3 and planned_workers({"mode": "probe"}) == 0


ORPHAN_PARENT = r"""
import subprocess, sys
sys.path[:0] = [{src!r}]
from ktstr.vm import lifecycle
if {python!r}:
    lifecycle.shutil.which = lambda name: None
proc = subprocess.Popen(lifecycle.guarded_argv(["/bin/sleep", "60"]), start_new_session=True)
print(proc.pid, flush=True)
import time; time.sleep(60)
"""


@pytest.mark.parametrize("python", [False, True], ids=["setpriv", "python"])
def test_qemu_dies_with_a_sigkilled_parent(tmp_path, python):
    """The child of guarded_argv (standing in for QEMU) dies when its parent is SIGKILLed."""
    if not python and not lifecycle.shutil.which("setpriv"):
        pytest.skip("no setpriv on this host")
    src = str(Path(lifecycle.__file__).parents[2])
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT.format(src=src, python=python)],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    # exec'd through the guard
    wait_until(lambda: "sleep" in Path(f"/proc/{child}/cmdline").read_text(), "the guard's exec")
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def gone() -> bool:
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]  # dead, not yet reaped

    wait_until(gone, "the child to die with its SIGKILLed parent")


def test_the_guard_refuses_to_start_when_the_parent_is_already_gone():
    argv = lifecycle.guarded_argv(["/bin/echo", "ran"])
    pid_at = argv.index(str(os.getpid()))
    argv[pid_at] = "1"  # as if the parent had died and init had adopted the child
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 125 and "ran" not in out.stdout


FLOODING_QEMU = r"""
import os, re, sys, time
args = " ".join(sys.argv)
channel = int(re.search(r"socket,id=ktstr0,fd=(\d+)", args).group(1))
print("booting", flush=True)
chunk = (b'{{"v":1,"kind":"kmsg","t":1,"text":"' + b"f" * 4000 + b'"}}\n') * 16
while True:
    os.write(channel, chunk)
"""


def test_a_flooding_guest_ends_the_vm_as_flooded_and_qemu_is_killed(tmp_path, monkeypatch):
    """QEMU faked at the process boundary: it writes to the channel without end."""
    from ktstr.vm import qemu
    from ktstr.vm.qemu import VmConfig

    script = tmp_path / "fake_qemu.py"
    script.write_text(FLOODING_QEMU.format())
    monkeypatch.setattr(
        qemu, "choose_qemu", lambda *a: qemu.QemuCommand(("qemu",), "7.2", "system", "test")
    )
    real = lifecycle.build_argv
    monkeypatch.setattr(
        lifecycle, "build_argv", lambda cfg: [sys.executable, str(script), *real(cfg)[1:]]
    )
    monkeypatch.setattr(lifecycle, "_KILL_GRACE_S", 0.5)
    cfg = VmConfig("/k", "/i", Topology.parse("1n1l1c1t"), "tcg")
    limits = lifecycle.StreamLimits(channel_total=8 << 20)
    result = lifecycle.run_vm(cfg, tmp_path, timeout_s=HANG_GUARD_S, limits=limits)
    assert result.end == lifecycle.FLOODED  # not TIMEOUT: the flood itself ended the VM
    assert "the guest flooded the channel" in result.flooded
    assert result.exit_code is not None  # QEMU was ended and reaped
    assert result.channel_bytes <= limits.channel_total + 64 * 1024
    with pytest.raises(VmError, match="flooded the channel"):
        check_end(result)
