"""The scheduler runner's parsers: kernel log records, sched_ext event counters,
and the scheduler's output split into lines."""

from __future__ import annotations

import os

import pytest

from ktstr import wire
from ktstr.guest import sched


@pytest.mark.parametrize(
    ("record", "want"),
    [
        ("6,339,5140900,-;NET: Registered PF_INET6\n", (6, 5140900, "NET: Registered PF_INET6")),
        # facility in the high bits (3 = daemon: 3 << 3 | 4 = 28), level in the low three
        ("28,1,2000,-;systemd: warn\n", (4, 2000, "systemd: warn")),
        # continuation lines (dictionary) after the text are dropped
        (
            '3,40,7000,c;sched_ext: BPF scheduler "simple" errored\n SUBSYSTEM=cpu\n',
            (3, 7000, 'sched_ext: BPF scheduler "simple" errored'),
        ),
        # a caller id field after the flags; a ';' inside the text stays
        ("4,5,6,-,caller=T1;a; b\n", (4, 6, "a; b")),
        ("0,1,2,-;", (0, 2, "")),
    ],
)
def test_parse_kmsg(record, want):
    assert sched.parse_kmsg(record) == want


def test_parse_kmsg_refuses_a_record_without_its_header():
    with pytest.raises((ValueError, IndexError)):
        sched.parse_kmsg("no header here")


def test_parse_events_keeps_named_integer_counters():
    text = (
        "SCX_EV_SELECT_CPU_FALLBACK 3\n"
        "SCX_EV_DISPATCH_LOCAL_DSQ_OFFLINE     0\n"
        "SCX_EV_NEGATIVE -2\n"
        "\n"
        "lonely\n"
        "SCX_EV_NOT_A_NUMBER x1\n"
        " 42\n"
    )
    assert sched.parse_events(text) == {
        "SCX_EV_SELECT_CPU_FALLBACK": 3,
        "SCX_EV_DISPATCH_LOCAL_DSQ_OFFLINE": 0,
        "SCX_EV_NEGATIVE": -2,
    }
    assert sched.parse_events("") == {}


class Channel:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, kind: str, **payload: object) -> None:
        self.sent.append(wire.decode(wire.encode(kind, **payload)))


def test_drain_sends_whole_lines_and_the_tail_at_eof():
    channel = Channel()
    proc = sched.SchedulerProcess(channel, {"path": "/bin/true", "args": [], "ops": "x"})
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    proc.out_fd = read_fd
    os.write(write_fd, b"first\nsec")
    proc.drain()  # nothing more to read yet: the half line waits
    assert [m["line"] for m in channel.sent] == ["first"]
    os.write(write_fd, b"ond\n\xfflast")
    os.close(write_fd)
    proc.drain()  # EOF: the fd is closed and the unterminated tail is sent
    assert [m["line"] for m in channel.sent] == ["first", "second", "\ufffdlast"]
    assert all(m["kind"] == wire.SCHED_OUTPUT for m in channel.sent)
    assert proc.out_fd == -1 and proc.partial == b""


def test_a_stall_line_says_whether_its_task_is_a_kernel_thread():
    # pid 2 is kthreadd on Linux; this process is not a kernel thread
    assert sched.stalled_task_kthread("sched_ext: x: kthreadd[2] failed to run for 3.1s") == {
        "task_kthread": True
    }
    mine = f"sched_ext: x: python3[{os.getpid()}] failed to run for 3.1s"
    assert sched.stalled_task_kthread(mine) == {"task_kthread": False}
    assert sched.stalled_task_kthread("sched_ext: x: gone[999999999] failed to run for 1s") == {}
    assert sched.stalled_task_kthread("NET: Registered PF_INET6") == {}
