"""Per-step verdicts over hand-built records: a step cut, and a fault only one step shows."""

from ktstr.checks import judge, steps

STEP = 0.1


def pair_worker(wid: int, rates: list[tuple[float, float]]) -> dict:
    """A spinner on CPU 0 whose CPU rate is ``rate`` until each ``until``."""
    points, at, cpu_s, units = [], 0.0, 0.0, 0
    for until, rate in rates:
        while at < until - 1e-9:
            points.append([round(at, 6), units, 0, int(cpu_s * 1e9)])
            at, cpu_s, units = at + STEP, cpu_s + STEP * rate, units + int(rate * 100)
    points.append([round(at, 6), units, 0, int(cpu_s * 1e9)])
    return {
        "id": wid,
        "cgroup_path": "cg_0",
        "work": "spin",
        "units": units,
        "start_s": 0.0,
        "end_s": round(at, 6),
        "cpu_time_ns": int(cpu_s * 1e9),
        "migrations": 0,
        "gaps": [[0.1, 1.0, 0]],
        "residency": [[0.0, 0]],
        "progress": points,
        "cpus": {"0": units},
        "error": None,
    }


def two_steps(second: tuple[float, float]) -> dict:
    """Two spinners sharing CPU 0 evenly for 8 s, then at ``second`` rates for 4 s."""
    workers = [pair_worker(i, [(8.0, 0.5), (12.0, second[i])]) for i in (0, 1)]
    return {
        "duration_s": 12.0,
        "workers": workers,
        "console": [],
        "observed_topology": {"cpus": 1},
        "plan": {
            "steps": [
                {"start_s": 0.0, "hold_s": 8.0, "ops": [{"op": "add_cgroup"}, {"op": "spawn"}]},
                {"start_s": 8.0, "hold_s": 4.0, "ops": [{"op": "fixture_knob"}]},
            ]
        },
        "events": [
            {"at_s": 0.0, "op": "add_cgroup", "path": "cg_0", "cpus": None},
            {"at_s": 0.0, "op": "spawn", "path": "cg_0", "ids": [0, 1]},
            {"at_s": 8.0, "op": "fixture_knob", "path": None},
        ],
    }


def test_a_cut_is_the_step_alone_from_its_start():
    rec = two_steps((0.8, 0.2))
    second = steps.steps(rec)[1]
    assert (second.label, second.start_s, second.end_s) == ("step 2 (fixture_knob)", 8.0, 12.0)
    part = steps.cut(rec, second)
    w = part["workers"][0]
    assert part["duration_s"] == 4.0 and (w["start_s"], w["end_s"]) == (0.0, 4.0)
    assert round(w["cpu_time_ns"] / 1e9, 3) == 3.2  # 0.8 of a CPU for 4 s
    spawn = next(e for e in part["events"] if e["op"] == "spawn")
    assert spawn["at_s"] == 0.0  # released before the step: no release gap in it


def test_unfairness_in_one_step_fails_named_by_its_step_while_the_whole_run_passes():
    rec = two_steps((0.8, 0.2))  # 4:1 in the second step only
    fairness = [f for f in judge(rec).findings if f.check == "fairness"]
    failed = [f for f in fairness if f.status == "fail"]
    assert len(failed) == 1, fairness
    assert failed[0].step == "step 2 (fixture_knob)"
    assert failed[0].message.startswith("step 2 (fixture_knob): cgroup cg_0: ")
    assert "ratio 16.00, limit 2.5" in failed[0].message
    # judged over the whole run only, the same record passes fairness
    rec["plan"]["steps"] = rec["plan"]["steps"][:1]
    assert all(f.status != "fail" for f in judge(rec).findings if f.check == "fairness")


def test_even_steps_add_nothing_and_timed_findings_name_their_step():
    rec = two_steps((0.5, 0.5))
    assert all(f.status != "fail" for f in judge(rec).findings)
    rec["workers"][1]["gaps"] = [[3.0, 8.5, 0, 0.0, 0, 1]]  # 3 s off its CPU in the second step
    rec["workers"][1]["progress"] = [
        p for p in rec["workers"][1]["progress"] if not 8.5 < p[0] < 11.5
    ]
    (stuck,) = [f for f in judge(rec).findings if f.check == "not_stuck" and f.status == "fail"]
    assert stuck.step == "step 2 (fixture_knob)"


def test_each_step_has_its_metrics_for_compare():
    from ktstr.results.metrics import definition, values

    got = values(two_steps((0.8, 0.2)))
    assert got["step1.work_units"] == 8000.0 and got["step2.work_units"] == 4000.0
    metric = definition("step2.work_rate", [])
    assert metric is not None and metric.higher_is_better and "in step 2" in metric.description
    assert definition("step2.wake_p99", []) is None  # a whole-run figure a step cannot split
