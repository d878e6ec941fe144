"""``ktstr shell --exec``: the guest side runs the command (here on the host, as it would in
the VM) and streams it; the host side turns its end into an exit code or one sentence."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ktstr import wire
from ktstr.errors import VmError
from ktstr.guest import execmode
from ktstr.shell import exit_status
from ktstr.vm import guest_messages


class Channel:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, kind: str, **payload: object) -> None:
        msg = wire.decode(wire.encode(kind, **payload))
        assert guest_messages.validate(msg) is None, msg  # the host would accept it
        self.messages.append(msg)

    def text(self, stream: str) -> str:
        chunks = [m for m in self.messages if m["kind"] == wire.EXEC_OUTPUT]
        return "".join(m["data"] for m in chunks if m["stream"] == stream)

    def end(self) -> dict:
        ends = [m for m in self.messages if m["kind"] == wire.EXEC_END]
        assert len(ends) == 1
        return ends[0]


def test_output_streams_and_exit_code():
    ch = Channel()
    execmode.run(ch, {"command": "echo out; echo err >&2; printf 'h\\303'; printf '\\251'; exit 3"})
    assert ch.text("stdout") == "out\nhé"  # a character split over two reads stays whole
    assert ch.text("stderr") == "err\n"
    assert ch.end()["code"] == 3 and ch.end()["timed_out"] is False


def test_a_signal_is_reported():
    ch = Channel()
    execmode.run(ch, {"command": "kill -9 $$"})
    assert ch.end()["signal"] == 9


def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path):
    ch = Channel()
    started = time.monotonic()
    marker = tmp_path / "still-running"
    execmode.run(
        ch, {"command": f"echo go; (sleep 2; touch {marker}) & sleep 30", "timeout_s": 0.5}
    )
    assert time.monotonic() - started < 5
    assert ch.end()["timed_out"] is True and "code" not in ch.end()
    assert ch.text("stdout") == "go\n"
    time.sleep(2.5)
    assert not marker.exists()  # the whole session was killed, not only the shell


def test_a_background_child_holding_the_pipe_does_not_hold_the_end():
    ch = Channel()
    started = time.monotonic()
    execmode.run(ch, {"command": "sleep 20 & echo left"})
    assert time.monotonic() - started < 5
    assert ch.end()["code"] == 0 and ch.text("stdout") == "left\n"


def test_exit_status_from_the_end_message():
    run_dir = Path("runs/x")
    assert exit_status({"timed_out": False, "code": 7}, None, run_dir) == 7
    assert exit_status({"timed_out": False, "signal": 9}, None, run_dir) == 137
    with pytest.raises(VmError, match=r"still running after 3 s \(--exec-timeout\)"):
        exit_status({"timed_out": True}, 3.0, run_dir)
    with pytest.raises(VmError, match="did not run: the scheduler did not attach"):
        exit_status({"timed_out": False, "skipped": "the scheduler did not attach"}, None, run_dir)
    with pytest.raises(VmError, match="without the command's exit status"):
        exit_status(None, None, run_dir)


def test_exec_timeout_needs_a_command():
    from tests.helpers import assert_one_sentence, ktstr

    assert_one_sentence(ktstr("shell", "--exec-timeout", "3"), "--exec-timeout bounds a command")
