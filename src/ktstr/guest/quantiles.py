"""Nearest-rank quantiles over sorted samples (wake and I/O latencies)."""

from __future__ import annotations


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
