"""The guest's payload processes, run for real on the host: bounded output, ends, stops.

The cgroup root is a directory (writing cgroup.procs there is a plain write).
"""

import signal
import time
from pathlib import Path

import pytest

from ktstr import wire
from ktstr.guest import cgroups, payloads
from tests.helpers import wait_until


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, kind: str, **payload: object) -> None:
        self.sent.append(wire.decode(wire.encode(kind, **payload)))

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.sent if m["kind"] == kind]


@pytest.fixture
def running(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cgroups, "CG_BASE", str(tmp_path))
    (tmp_path / "a").mkdir()
    channel = FakeChannel()
    p = payloads.Payloads(channel)
    p.t0 = time.monotonic()
    return p, channel


def _op(i: int, script: str) -> dict:
    return {"op": "run_payload", "path": "a", "id": i, "argv": ["/bin/sh", "-c", script]}


def _until_ended(p: payloads.Payloads, ids: list[int]) -> None:
    def step() -> bool:
        p.drain()
        p.reap()
        return not p.is_running(ids)

    wait_until(step, f"payloads {ids} ended")


def _text(channel: FakeChannel, stream: str) -> str:
    return "".join(m["data"] for m in channel.of(wire.PAYLOAD_OUTPUT) if m["stream"] == stream)


def test_output_is_streamed_bounded_and_the_exit_code_reported(running, tmp_path):
    p, channel = running
    p.start(_op(0, "head -c 600000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3"))
    _until_ended(p, [0])
    assert len(_text(channel, "stdout")) == payloads.MAX_STREAM
    assert _text(channel, "stderr") == "oops\n"
    (end,) = channel.of(wire.PAYLOAD_END)
    assert end["code"] == 3 and end["stopped_by"] is None
    assert end["dropped"] == {"stdout": 600000 - payloads.MAX_STREAM, "stderr": 0}
    assert (tmp_path / "a" / "cgroup.procs").read_text().strip().isdigit()  # it joined


def test_kill_and_the_end_stop_the_whole_session(running):
    p, channel = running
    p.start(_op(0, "sleep 600 & sleep 600; wait"))
    p.start(_op(1, "trap '' TERM; echo ready; sleep 600 & wait"))

    def trapped() -> bool:  # SIGTERM before the trap would end it too early
        p.drain()
        return "ready" in _text(channel, "stdout")

    wait_until(trapped, "payload 1 ignores SIGTERM")
    p.kill([0], "kill_payload")
    _until_ended(p, [0])
    p.stop_all(grace_s=0.2)  # payload 1 ignores SIGTERM: SIGKILL after the grace
    ends = {m["id"]: m for m in channel.of(wire.PAYLOAD_END)}
    assert ends[0]["stopped_by"] == "kill_payload" and ends[0]["signal"] == signal.SIGTERM
    assert ends[1]["stopped_by"] == "end" and ends[1]["signal"] == signal.SIGKILL
    assert not p.running


def test_a_program_that_cannot_start_exits_127_saying_why(running):
    p, channel = running
    p.start({"op": "run_payload", "path": "a", "id": 0, "argv": ["/nonexistent/prog"]})
    _until_ended(p, [0])
    assert channel.of(wire.PAYLOAD_END)[0]["code"] == 127
    assert "cannot start /nonexistent/prog" in _text(channel, "stderr")


def test_an_exit_the_worker_pools_reaper_collects_still_reaches_the_payload(running):
    from ktstr.guest.pool import Pool

    p, channel = running
    pool = Pool()
    pool.other_exit = p.exited
    p.start(_op(0, "exit 4"))

    def reaped_by_the_pool() -> bool:
        pool.reap()  # waitpid(-1): takes the payload's status before the payloads look
        return p.running[0].status is not None

    wait_until(reaped_by_the_pool, "the pool reaped the payload")
    _until_ended(p, [0])
    assert channel.of(wire.PAYLOAD_END)[0]["code"] == 4


def test_a_kill_right_after_the_start_still_stops_it(running):
    p, channel = running
    p.start(_op(0, "sleep 600"))
    p.kill([0], "kill_payload")  # maybe before the child made its session
    _until_ended(p, [0])
    assert channel.of(wire.PAYLOAD_END)[0]["signal"] == signal.SIGTERM
