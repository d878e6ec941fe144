"""work_conservation over hand-built per-CPU samples."""

from ktstr.checks import judge
from ktstr.checks.cpu_load import components
from tests.unit.test_checks import record, worker


def timeline(util_and_wait, seconds=6.0, step=0.25):
    """Samples every ``step`` s; ``util_and_wait(cpu)`` -> (busy share, tasks queued)."""
    out, wait_ns = [], {}
    t = 0.0
    while t <= seconds + 1e-9:
        sample = {"at_s": round(t, 3), "util": {}, "schedstat": {}}
        for cpu in range(4):
            busy, queued = util_and_wait(cpu)
            wait_ns[cpu] = wait_ns.get(cpu, 0) + (int(queued * step * 1e9) if t else 0)
            sample["util"][str(cpu)] = busy
            sample["schedstat"][str(cpu)] = [0, wait_ns[cpu], 0]
        out.append(sample)
        t += step
    return out


def with_timeline(util_and_wait, events=None):
    rec = record([worker(i) for i in range(4)], events=events)
    rec["timeline"] = timeline(util_and_wait)
    return rec


def wc(rec):
    return [f for f in judge(rec).findings if f.check == "work_conservation"]


def test_everything_piled_on_one_cpu_fails_with_the_idle_capacity():
    (f,) = wc(with_timeline(lambda cpu: (1.0, 3.0) if cpu == 0 else (0.0, 0.0)))
    assert f.status == "fail" and f.kind == "idle_while_waiting"
    assert f.value == 3.0 and f.limit == 1.0
    assert "3.0 CPUs idle on average while tasks waited" in f.message


def test_busy_cpus_with_queues_or_idle_cpus_without_waiters_pass():
    (busy,) = wc(with_timeline(lambda cpu: (1.0, 1.0)))
    assert busy.status == "pass" and busy.value == 0.0
    (spare,) = wc(with_timeline(lambda cpu: (0.3, 0.0)))
    assert spare.status == "pass"


def test_a_transient_shorter_than_the_window_does_not_count():
    calls = {"n": 0}

    def blip(cpu):
        calls["n"] += 1
        t = (calls["n"] - 1) // 4 * 0.25
        return (0.0, 0.0) if cpu and 2.0 <= t < 2.5 else (1.0, 1.0 if t < 2.0 or t >= 2.5 else 3.0)

    (f,) = wc(with_timeline(blip))
    assert f.status == "pass" and 0 < f.value < 1.0


def test_idle_cpus_outside_the_waiting_workers_cpuset_are_not_waste():
    events = [
        {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": [0, 1]},
        {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0, 1, 2, 3]},
    ]
    rec = with_timeline(lambda cpu: (1.0, 1.0) if cpu < 2 else (0.0, 0.0), events)
    (f,) = wc(rec)
    assert f.status == "pass"
    groups = components([frozenset({0, 1}), frozenset({1, 2}), frozenset({3})])
    assert sorted(map(sorted, groups)) == [[0, 1, 2], [3]]


def test_no_samples_is_a_skip_with_a_reason():
    (f,) = wc(record([worker(0), worker(1)]))
    assert f.status == "skip" and "no per-CPU samples" in f.message
