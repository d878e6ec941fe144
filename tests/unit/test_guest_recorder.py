"""The worker's Recorder and result summary, on a scripted clock and CPU.

``Recorder.stamp`` reads the clock, the CPU, then the clock again (to
know whether the CPU read could predate a move), so each stamp takes two
clock values from the script.
"""

from __future__ import annotations

import pytest

from ktstr.guest import workers
from ktstr.guest.quantiles import percentile


class Script:
    """A fake ``time`` module and ``getcpu`` that return scripted values in order."""

    def __init__(self, clock: list[float], cpus: list[int]) -> None:
        self.clock, self.cpus = list(clock), list(cpus)

    def monotonic(self) -> float:
        return self.clock.pop(0)

    def getcpu(self) -> int:
        return self.cpus.pop(0)

    def ran_and_switches(self) -> tuple[float, int, int]:
        """The thread's rusage: 2 ms of CPU, a sleep and 3 preemptions more at each read."""
        self.reads = getattr(self, "reads", -1) + 1
        return self.reads * 0.002, self.reads, self.reads * 3

    def thread_time_ns(self) -> int:
        """The worker's CPU time: 1 ms more at each read."""
        self.cpu_ns = getattr(self, "cpu_ns", 0) + 1_000_000
        return self.cpu_ns


def recorder(monkeypatch, clock, cpus, t0=100.0, deadline=200.0) -> tuple[workers.Recorder, Script]:
    script = Script(clock, cpus)
    monkeypatch.setattr(workers, "time", script)
    monkeypatch.setattr(workers, "getcpu", script.getcpu)
    monkeypatch.setattr(workers, "_ran_and_switches", script.ran_and_switches)
    return workers.Recorder(t0, deadline), script


def stamps(times: list[float], skew: float = 0.0) -> list[float]:
    """Two clock reads per stamp: the stamp's time and ``skew`` later."""
    return [v for t in times for v in (t, t + skew)]


def test_a_new_recorder_starts_where_it_is(monkeypatch):
    rec, _ = recorder(monkeypatch, [100.5], [3])
    assert rec.cpu == 3 and rec.cpus == {3: 1}
    assert rec.residency == [[0.5, 3]]
    assert rec.progress == [[0.5, 0, 3, 1_000_000]]  # the CPU time it had at the start
    assert rec.units == 0 and rec.migrations == 0 and rec.gaps == []


def test_stamps_keep_the_longest_gaps_longest_first_with_when_and_where(monkeypatch):
    # Gaps after the start at 100.0: 0.1, 0.5, 0.2, 0.05, 0.9, 0.3, 0.01 s.
    times = [100.1, 100.6, 100.8, 100.85, 101.75, 102.05, 102.06]
    rec, _ = recorder(monkeypatch, [100.0] + stamps(times), [0] * 8)
    for _ in times:
        rec.stamp()
    assert len(rec.gaps) == workers.TOP_GAPS
    assert [round(g[0], 6) for g in rec.gaps] == [0.9, 0.5, 0.3, 0.2, 0.1]
    # Each gap is dated by its start: the stamp before it.
    assert [round(g[1], 6) for g in rec.gaps] == [0.85, 0.1, 1.75, 0.6, 0.0]
    # ... and carries the CPU time, sleeps and preemptions between its two stamps
    assert {(round(g[3], 6), g[4], g[5]) for g in rec.gaps} == {(0.002, 1, 3)}
    assert rec.units == len(times)
    assert rec.last == 102.06


def test_a_move_counts_a_migration_and_a_residency_entry(monkeypatch):
    times = [100.1, 100.2, 100.3, 100.4]
    rec, _ = recorder(monkeypatch, [100.0] + stamps(times), [0, 0, 2, 2, 1])
    for _ in times:
        rec.stamp()
    assert rec.migrations == 2
    assert rec.residency == [[0.0, 0], [0.2, 2], [0.4, 1]]
    assert rec.cpus == {0: 2, 2: 2, 1: 1}  # the start counts too
    # The gap before a move is charged to the CPU the worker resumed on.
    assert [g[2] for g in sorted(rec.gaps, key=lambda g: g[1])] == [0, 2, 2, 1]


def test_a_cpu_read_that_straddled_a_preemption_says_nothing_of_where(monkeypatch):
    slow = workers.AMBIGUOUS_CPU_S * 2
    clock = [100.0, 100.2, 100.2 + slow]  # the second read came late
    rec, _ = recorder(monkeypatch, clock, [0, 5])
    rec.stamp()
    assert rec.cpu == 0 and rec.migrations == 0  # cpu 5 is not believed
    assert rec.cpus == {0: 2}
    assert rec.progress[-1][:3] == [0.2, 1, None]  # the progress point has no CPU


def test_progress_points_at_most_every_step(monkeypatch):
    step = workers.PROGRESS_STEP_S
    times = [100.0 + 0.3 * step * i for i in range(1, 10)]  # a stamp every 0.3 step
    rec, _ = recorder(monkeypatch, [100.0] + stamps(times), [1] * 10)
    for _ in times:
        rec.stamp()
    assert [p[1] for p in rec.progress] == [0, 4, 8]  # units at each point
    assert all(p[2] == 1 for p in rec.progress)
    cpu_ns = [p[3] for p in rec.progress]
    assert cpu_ns == sorted(cpu_ns) and len(set(cpu_ns)) == len(cpu_ns)  # read at each point
    spacing = [b[0] - a[0] for a, b in zip(rec.progress, rec.progress[1:], strict=False)]
    assert all(s >= step - 1e-9 for s in spacing)


def test_stamp_stops_at_the_deadline_or_when_asked(monkeypatch):
    rec, _ = recorder(monkeypatch, [100.0] + stamps([100.5, 101.0]), [0, 0, 0], deadline=101.0)
    rec.stamp()  # before the deadline: goes on
    with pytest.raises(workers.Stop):
        rec.stamp()
    assert rec.units == 2  # the last unit still counts

    rec, _ = recorder(monkeypatch, [100.0] + stamps([100.5]), [0, 0])
    rec.stopping = True  # SIGTERM's handler sets it
    with pytest.raises(workers.Stop):
        rec.stamp(3)
    assert rec.units == 3


def test_residency_is_capped(monkeypatch):
    monkeypatch.setattr(workers, "MAX_RESIDENCY", 3)
    times = [100.0 + i / 10 for i in range(1, 6)]
    rec, _ = recorder(monkeypatch, [100.0] + stamps(times), [0, 1, 0, 1, 0, 1])
    for _ in times:
        rec.stamp()
    assert rec.migrations == 5 and len(rec.residency) == 3


def test_the_result_summarizes_wakes_in_microseconds(monkeypatch):
    rec, _ = recorder(monkeypatch, [100.0] + stamps([100.25]), [0, 0])
    rec.stamp()
    for us in range(100, 0, -1):  # 1 .. 100 us, unsorted
        rec.wake(us / 1e6)
    out = workers.result(7, "bursty", rec, None)
    assert out["id"] == 7 and out["work"] == "bursty" and out["units"] == 1
    assert out["start_s"] == 0.0 and out["end_s"] == 0.25
    wake = out["wake"]
    assert wake["n"] == 100 and wake["max_us"] == 100.0
    assert wake["p50_us"] == 51.0  # nearest rank: index round(0.5 * 99) = 50
    assert wake["p99_us"] == 99.0
    assert len(wake["cdf_us"]) == workers.CDF_POINTS
    assert wake["cdf_us"][0] == 1.0 and wake["cdf_us"][-1] == 100.0
    assert wake["cdf_us"] == sorted(wake["cdf_us"])
    assert out["cpus"] == {"0": 2} and out["error"] is None


def test_no_wakes_no_wake_summary(monkeypatch):
    rec, _ = recorder(monkeypatch, [100.0], [0])
    assert workers.result(0, "spin", rec, "boom")["wake"] is None


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [
        ([1, 2, 3, 4, 5], 0.5, 3),
        ([1, 2, 3, 4, 5], 0.0, 1),
        ([1, 2, 3, 4, 5], 1.0, 5),
        ([1, 2, 3, 4, 5], 0.74, 4),  # index round(2.96) = 3
        ([7], 0.99, 7),
        ([1, 2], 0.5, 1),  # index round(0.5) = 0: Python rounds half to even
        ([1, 2, 3, 4], 0.5, 3),  # index round(1.5) = 2
        (list(range(101)), 0.99, 99),
        ([1, 2, 3], -1.0, 1),  # out-of-range quantiles clamp to the ends
        ([1, 2, 3], 2.0, 3),
    ],
)
def test_percentile_is_nearest_rank(values, q, want):
    assert percentile(values, q) == want


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(IndexError):
        percentile([], 0.5)
