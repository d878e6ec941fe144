"""imbalance over hand-built per-CPU samples (the timeline builder is work_conservation's)."""

from ktstr.checks import judge
from tests.unit.test_work_conservation import with_timeline


def checks(rec, name):
    return [f for f in judge(rec).findings if f.check == name]


def test_one_cpu_carrying_the_queue_while_the_others_run_one_task_each_fails_imbalance_only():
    rec = with_timeline(lambda cpu: (1.0, 5.0) if cpu == 0 else (1.0, 0.0))
    (f,) = checks(rec, "imbalance")
    assert f.status == "fail" and f.kind == "imbalanced" and f.cpu == 0
    assert f.value == 6.0 and f.limit == 5.0
    assert "cpu 0 carried 6.0 runnable tasks" in f.message
    (wc,) = checks(rec, "work_conservation")
    assert wc.status == "pass"  # no CPU was idle


def test_balanced_queues_pass_and_spare_capacity_is_not_judged():
    (f,) = checks(with_timeline(lambda cpu: (1.0, 1.0 + 0.5 * (cpu == 0))), "imbalance")
    assert f.status == "pass" and f.value == 1.25
    (skip,) = checks(with_timeline(lambda cpu: (0.5, 0.0)), "imbalance")
    assert skip.status == "skip" and "at least one runnable task per CPU" in skip.message


def test_everything_on_one_cpu_fails_both_placement_checks():
    rec = with_timeline(lambda cpu: (1.0, 3.0) if cpu == 0 else (0.0, 0.0))
    assert [f.status for f in checks(rec, "imbalance")] == ["fail"]
    assert [f.status for f in checks(rec, "work_conservation")] == ["fail"]
