"""Named metrics derived from a record, each with a polarity, a unit and regression thresholds.

A regression needs the change to exceed both the absolute and the relative
threshold (and to be statistically significant; see ``compare``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ktstr.checks import steps


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    abs_threshold: float
    rel_threshold: float  # fraction, 0.10 = 10 %
    description: str
    fn: Callable[[dict], float | None]


def _workers(r: dict) -> list[dict]:
    return [w for w in r.get("workers", []) if not w.get("error") and w.get("units")]


def _finding_value(r: dict, check: str, kinds: tuple[str, ...]) -> float | None:
    """The largest value among one check's findings of these kinds."""
    values = [
        f["value"]
        for f in r.get("findings", [])
        if f["check"] == check and "value" in f and f.get("kind") in kinds
    ]
    return max(values) if values else None


def _worst_gap(r: dict) -> float | None:
    gaps = [g[0] * 1000 for w in _workers(r) for g in w.get("gaps", [])]
    return max(gaps) if gaps else None


def _wakes(r: dict, key: str) -> list[float]:
    return [w["wake"][key] for w in _workers(r) if w.get("wake")]


def _pctl(r: dict, key: str) -> float | None:
    values = _wakes(r, key)
    return statistics.median(values) if values else None


def _wake_cv(r: dict) -> float | None:
    values = _wakes(r, "p50_us")
    if len(values) < 2 or not statistics.mean(values):
        return None
    return statistics.pstdev(values) / statistics.mean(values)


def _rate(w: dict) -> float:
    wall = max(1e-9, w.get("end_s", 0) - w.get("start_s", 0))
    return w["units"] / wall


def _runq_delays(r: dict) -> list[float]:
    return [
        w["wait_ns"] / w["timeslices"] / 1e6
        for w in _workers(r)
        if w.get("timeslices") and w.get("wait_ns") is not None
    ]


def _weight_deviation(r: dict) -> float | None:
    return _finding_value(r, "fairness", ("weight_mismatch", "weights_ok"))


def _imbalance(r: dict) -> float | None:
    """max/min mean utilization over CPUs, from the timeline."""
    per_cpu: dict[str, list[float]] = {}
    for sample in r.get("timeline", []):
        for cpu, util in sample.get("util", {}).items():
            per_cpu.setdefault(cpu, []).append(util)
    means = [statistics.mean(v) for v in per_cpu.values() if v]
    if len(means) < 2 or min(means) <= 0:
        return None
    return max(means) / min(means)


def _io(r: dict) -> list[dict]:
    return [w["io"] for w in _workers(r) if w.get("io")]


def _io_iops(r: dict) -> float | None:
    ios = _io(r)
    return float(sum(io["iops"] for io in ios)) if ios else None


def _io_p99(r: dict) -> float | None:
    values = [io["lat_us"]["p99"] for io in _io(r) if io.get("lat_us")]
    return statistics.median(values) if values else None


def _total(r: dict, fn: Callable[[dict], float]) -> float | None:
    ws = _workers(r)
    return float(sum(fn(w) for w in ws)) if ws else None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric(
            "worst_fairness_spread",
            "pts",
            False,
            3.0,
            0.25,
            "largest off-CPU share spread among equal workers",
            lambda r: _finding_value(r, "fairness", ("ok", "unfair")),
        ),
        Metric(
            "worst_gap", "ms", False, 50.0, 0.25, "longest gap between progress stamps", _worst_gap
        ),
        Metric(
            "migrations",
            "",
            False,
            20.0,
            0.25,
            "total migrations of all workers",
            lambda r: _total(r, lambda w: w.get("migrations", 0)),
        ),
        Metric(
            "migrations_per_unit",
            "",
            False,
            0.01,
            0.25,
            "migrations per unit of work",
            lambda r: (
                (_total(r, lambda w: w.get("migrations", 0)) or 0)
                / max(1.0, _total(r, lambda w: w["units"]) or 1.0)
                if _workers(r)
                else None
            ),
        ),
        Metric(
            "wake_p50",
            "us",
            False,
            50.0,
            0.20,
            "median of workers' p50 wake latency",
            lambda r: _pctl(r, "p50_us"),
        ),
        Metric(
            "wake_p99",
            "us",
            False,
            200.0,
            0.20,
            "median of workers' p99 wake latency",
            lambda r: _pctl(r, "p99_us"),
        ),
        Metric(
            "wake_cv",
            "",
            False,
            0.05,
            0.25,
            "coefficient of variation of p50 wake latency",
            _wake_cv,
        ),
        Metric(
            "work_units",
            "",
            True,
            100.0,
            0.05,
            "total work units of all workers",
            lambda r: _total(r, lambda w: w["units"]),
        ),
        Metric(
            "work_rate",
            "/s",
            True,
            5.0,
            0.05,
            "mean work units per second per worker",
            lambda r: statistics.mean([_rate(w) for w in _workers(r)]) if _workers(r) else None,
        ),
        Metric(
            "runq_delay_mean",
            "ms",
            False,
            0.5,
            0.20,
            "mean run-queue wait per timeslice",
            lambda r: statistics.mean(_runq_delays(r)) if _runq_delays(r) else None,
        ),
        Metric(
            "runq_delay_worst",
            "ms",
            False,
            1.0,
            0.25,
            "worst worker's mean run-queue wait",
            lambda r: max(_runq_delays(r)) if _runq_delays(r) else None,
        ),
        Metric(
            "weight_share_deviation",
            "%",
            False,
            5.0,
            0.25,
            "largest deviation of a cgroup's CPU share from its cpu.weight share",
            _weight_deviation,
        ),
        Metric("imbalance", "x", False, 0.1, 0.10, "max/min mean CPU utilization", _imbalance),
        Metric("io_iops", "/s", True, 10.0, 0.05, "total IOPS of the disk I/O workers", _io_iops),
        Metric(
            "io_lat_p99",
            "us",
            False,
            500.0,
            0.20,
            "median of I/O workers' p99 operation latency",
            _io_p99,
        ),
    ]
}


# A payload's metric is named "<cgroup>/<payload>.<metric>"; its unit and polarity come
# from the payload's declaration in the record.  A change must pass both thresholds.
PAYLOAD_ABS_THRESHOLD = 0.0
PAYLOAD_REL_THRESHOLD = 0.05


def payload_metrics(record: dict) -> dict[str, tuple[Metric, float]]:
    """Each payload metric of a record: its definition and its value."""
    out = {}
    for p in record.get("payloads") or []:
        for key, m in (p.get("metrics") or {}).items():
            name = f"{p['cgroup']}/{p['name']}.{key}"
            value = m.get("value")
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            metric = Metric(
                name,
                str(m.get("unit", "")),
                bool(m.get("higher_is_better", True)),
                PAYLOAD_ABS_THRESHOLD,
                PAYLOAD_REL_THRESHOLD,
                f"{p['payload']}'s {key}, in cgroup {p['cgroup']}",
                lambda r, v=value: v,
            )
            out[name] = (metric, float(value))
    return out


def definition(name: str, records: list[dict]) -> Metric | None:
    """A built-in metric, or a payload metric as the first record holding it declares it."""
    if name in METRICS:
        return METRICS[name]
    if (per_step := step_definition(name)) is not None:
        return per_step
    for r in records:
        found = payload_metrics(r).get(name)
        if found:
            return found[0]
    return None


# Metrics a step's cut supports (the others need whole-run figures or findings).
STEP_METRICS = ("work_units", "work_rate", "worst_gap", "migrations", "imbalance")


def _builtin(record: dict, names: tuple[str, ...] | list[str]) -> dict[str, float]:
    out = {}
    for name in names:
        try:
            value = METRICS[name].fn(record)
        except (KeyError, TypeError, ZeroDivisionError, statistics.StatisticsError):
            value = None
        if value is not None and math.isfinite(value):
            out[name] = float(value)
    return out


def step_metrics(record: dict) -> list[dict]:
    """Per step of a scenario of several: its label, span and STEP_METRICS."""
    all_steps = steps.steps(record)
    if len(all_steps) < 2 or not record.get("workers"):
        return []
    return [
        {
            "step": s.label,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "metrics": _builtin(steps.cut(record, s), STEP_METRICS),
        }
        for s in all_steps
    ]


def step_definition(name: str) -> Metric | None:
    """``step2.work_rate`` is ``work_rate`` over the second step."""
    head, dot, base = name.partition(".")
    if not (dot and head.startswith("step") and head[4:].isdigit() and base in STEP_METRICS):
        return None
    m = METRICS[base]
    return Metric(
        name,
        m.unit,
        m.higher_is_better,
        m.abs_threshold,
        m.rel_threshold,
        f"{m.description}, in step {head[4:]}",
        m.fn,
    )


def values(record: dict) -> dict[str, float]:
    """Every metric the record supports (finite values only), payload and step metrics
    included."""
    out = {name: value for name, (_, value) in payload_metrics(record).items()}
    out.update(_builtin(record, list(METRICS)))
    for n, step in enumerate(step_metrics(record), 1):
        out.update({f"step{n}.{k}": v for k, v in step["metrics"].items()})
    return out
