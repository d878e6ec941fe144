"""Per-CPU samples: /proc/stat and /proc/schedstat parsing, utilization, steal."""

from __future__ import annotations

from ktstr import wire
from ktstr.guest import sampling

PROC_STAT = """\
cpu  500 0 300 9000 100 0 20 7 0 0
cpu0 300 0 200 4000 50 0 10 5 0 0
cpu1 200 0 100 5000 50 0 10 2 0 0
intr 12345 0 0
ctxt 999
cpufreq 1
"""

SCHEDSTAT = """\
version 15
timestamp 4295000000
cpu0 0 0 0 0 0 0 1111 2222 33
domain0 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
cpu1 0 0 0 0 0 0 4444 5555 66
"""


def test_proc_stat_keeps_each_cpus_first_eight_counters(tmp_path):
    path = tmp_path / "stat"
    path.write_text(PROC_STAT)
    assert sampling.proc_stat(str(path)) == {
        0: [300, 0, 200, 4000, 50, 0, 10, 5],
        1: [200, 0, 100, 5000, 50, 0, 10, 2],
    }  # neither the "cpu" total nor "cpufreq"


def test_schedstat_keeps_run_wait_and_timeslices_per_cpu(tmp_path):
    path = tmp_path / "schedstat"
    path.write_text(SCHEDSTAT)
    assert sampling.schedstat_cpus(str(path)) == {0: [1111, 2222, 33], 1: [4444, 5555, 66]}


def test_utilization_is_the_busy_share_since_the_last_sample():
    before = {0: [100, 0, 0, 100, 0, 0, 0, 0], 1: [0, 0, 0, 0, 0, 0, 0, 0]}
    now = {
        0: [175, 0, 0, 110, 15, 0, 0, 0],  # 75 busy, 10 idle + 15 iowait of 100
        1: [0, 0, 0, 0, 0, 0, 0, 0],  # no ticks at all: idle 0 / total 1
        2: [5, 0, 0, 5, 0, 0, 0, 0],  # appeared: nothing to compare with yet
    }
    assert sampling.utilization(now, before) == {"0": 0.75, "1": 1.0}
    assert sampling.utilization(now, {}) == {}


def test_utilization_rounds_to_four_places():
    assert sampling.utilization({0: [1, 0, 0, 2, 0, 0, 0, 0]}, {0: [0] * 8}) == {"0": 0.3333}


def test_steal_is_the_eighth_counter():
    assert sampling.steal({0: [0, 0, 0, 0, 0, 0, 0, 9], 3: [1] * 8}) == {"0": 9, "3": 1}


class Channel:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, kind: str, **payload: object) -> None:
        self.sent.append(wire.decode(wire.encode(kind, **payload)))


def test_a_sample_is_a_valid_wire_message_and_feeds_the_next(tmp_path, monkeypatch):
    stat, schedstat = tmp_path / "stat", tmp_path / "schedstat"
    stat.write_text(PROC_STAT)
    schedstat.write_text(SCHEDSTAT)
    read_stat, read_schedstat = sampling.proc_stat, sampling.schedstat_cpus
    monkeypatch.setattr(sampling, "proc_stat", lambda: read_stat(str(stat)))
    monkeypatch.setattr(sampling, "schedstat_cpus", lambda: read_schedstat(str(schedstat)))
    channel = Channel()
    first = sampling.send_sample(channel, 0.0, {}, 3, [])
    stat.write_text(PROC_STAT.replace("cpu1 200 0 100 5000", "cpu1 260 0 100 5040"))
    second = sampling.send_sample(channel, 0.0, first, 2, [])
    a, b = channel.sent
    assert a["kind"] == b["kind"] == wire.SAMPLE
    assert a["util"] == {}  # the first sample has no interval
    assert b["util"] == {"0": 1.0, "1": 0.6}  # cpu0 did not move: no ticks reads busy
    assert a["steal"] == {"0": 5, "1": 2}
    assert a["schedstat"] == {"0": [1111, 2222, 33], "1": [4444, 5555, 66]}
    assert a["running"] == 3 and b["running"] == 2 and a["disks"] == {}
    assert set(second) == {"stat"} and second["stat"][1][0] == 260
