"""A/B comparison of runs: per metric, mean and confidence interval, a significance test,
and a verdict that needs the absolute and relative thresholds and significance together.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from ktstr.errors import ConfigError
from ktstr.results.metrics import METRICS, Metric, definition, step_definition, values

ALPHA = 0.05
EXACT_LIMIT = 16  # samples in all, up to which the Mann-Whitney p-value is exact


def mann_whitney(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test, by scipy.

    Exact for small samples (at most ``EXACT_LIMIT`` in all): scipy's exact
    U distribution without ties; with ties the exact permutation
    distribution of the tied ranks, because scipy's ``exact`` assumes no
    ties.  Larger samples use the normal approximation with tie and
    continuity corrections.  Two-sided is twice the smaller one-sided p.
    """
    if not a or not b:
        return 1.0
    if len(set(a) | set(b)) == 1:
        return 1.0  # nothing to rank: identical samples
    import numpy as np
    from scipy import stats

    if len(a) + len(b) > EXACT_LIMIT:
        method: object = "asymptotic"
    elif len(set(a) | set(b)) == len(a) + len(b) or min(len(a), len(b)) < 2:
        method = "exact"  # scipy permutes samples of two or more; a lone value has p >= 2/16
    else:
        method = stats.PermutationMethod(n_resamples=np.inf)
    result = stats.mannwhitneyu(a, b, alternative="two-sided", method=method)
    return min(1.0, float(result.pvalue))


def ci95(xs: list[float]) -> float:
    """Half-width of a normal-approximation 95 % interval of the mean (0 for one sample)."""
    if len(xs) < 2:
        return 0.0
    from scipy import stats

    return float(stats.norm.ppf(0.975) * stats.sem(xs))


@dataclass
class Row:
    group: str
    metric: str
    unit: str
    a_mean: float
    a_ci: float
    b_mean: float
    b_ci: float
    delta: float
    rel: float | None
    p: float
    verdict: str  # ok | better | worse | regression | n.s.
    higher_is_better: bool = True  # the metric's polarity


def load_policy(path: str | None) -> dict[str, dict]:
    """{"metric": {"abs": x, "rel": y}, "alpha": 0.05} overrides."""
    if not path:
        return {}
    try:
        policy = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read the policy {path}: {err}",
            'give a JSON file like {"worst_gap": {"abs": 100, "rel": 0.2}}',
        ) from None
    # Payload metrics ("<cgroup>/<payload>.<metric>") are named by the runs, not known here.
    unknown = [
        k
        for k in policy
        if k not in METRICS and k != "alpha" and "/" not in k and step_definition(k) is None
    ]
    if unknown:
        raise ConfigError(
            f"policy names unknown metric {unknown[0]!r}", "see 'ktstr metrics' for the names"
        )
    return policy


def compare_samples(
    group: str,
    name: str,
    a: list[float],
    b: list[float],
    policy: dict | None = None,
    metric: Metric | None = None,
) -> Row:
    """One metric of one group; ``metric`` defines a payload's (else a built-in one)."""
    metric = metric or METRICS[name]
    override = (policy or {}).get(name, {})
    abs_t = float(override.get("abs", metric.abs_threshold))
    rel_t = float(override.get("rel", metric.rel_threshold))
    alpha = float((policy or {}).get("alpha", ALPHA))
    am, bm = statistics.mean(a), statistics.mean(b)
    delta = bm - am
    rel = delta / abs(am) if am else None
    p = mann_whitney(a, b)
    worse = delta < 0 if metric.higher_is_better else delta > 0
    big = abs(delta) > abs_t and (rel is None or abs(rel) > rel_t)
    if not big:
        verdict = "ok"
    elif p >= alpha:
        verdict = "n.s."
    else:
        verdict = "regression" if worse else "better"
    return Row(
        group,
        name,
        metric.unit,
        am,
        ci95(a),
        bm,
        ci95(b),
        delta,
        rel,
        p,
        verdict,
        metric.higher_is_better,
    )


def group_key(record: dict) -> str:
    """scenario/topology[/profile]; the default profile pairs with EEVDF's runs."""
    sched = record.get("scheduler")
    profile = sched.get("profile") if isinstance(sched, dict) else None
    suffix = f"/{profile}" if profile and profile != "default" else ""
    return f"{record.get('scenario')}/{record.get('topology')}{suffix}"


def compare(a_records: list[dict], b_records: list[dict], policy: dict | None = None) -> list[Row]:
    """Pair runs by (scenario, topology, profile) and compare every shared metric."""

    def grouped(records: list[dict]) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in records:
            out.setdefault(group_key(r), []).append(values(r))
        return out

    ga, gb = grouped(a_records), grouped(b_records)
    rows = []
    for group in sorted(set(ga) & set(gb)):
        payload_names = sorted({n for v in ga[group] + gb[group] for n in v} - set(METRICS))
        for name in [*METRICS, *payload_names]:
            a = [v[name] for v in ga[group] if name in v]
            b = [v[name] for v in gb[group] if name in v]
            metric = definition(name, a_records + b_records)
            if a and b and metric:
                rows.append(compare_samples(group, name, a, b, policy, metric))
    return rows


def as_json(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]


def render(rows: list[Row], a_label: str, b_label: str, color: bool) -> str:
    marks = {"regression": "\033[31m", "better": "\033[32m", "n.s.": "\033[33m"}
    from ktstr.results.terminal import table

    out = [("group", "metric", "better", a_label, b_label, "delta", "p", "verdict")]
    for r in rows:
        rel = f" ({r.rel:+.0%})" if r.rel is not None else ""
        out.append(
            (
                r.group,
                r.metric + (f" [{r.unit}]" if r.unit else ""),
                "higher" if r.higher_is_better else "lower",
                f"{r.a_mean:.4g} ±{r.a_ci:.2g}",
                f"{r.b_mean:.4g} ±{r.b_ci:.2g}",
                f"{r.delta:+.4g}{rel}",
                f"{r.p:.3f}",
                r.verdict,
            )
        )
    lines = table(out)
    if color:
        for i, r in enumerate(rows, start=2):
            if r.verdict in marks:
                lines[i] = f"{marks[r.verdict]}{lines[i]}\033[0m"
    return "\n".join(lines)
