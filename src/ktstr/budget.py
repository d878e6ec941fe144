"""Fit a gauntlet into a time budget: cost estimates and a coverage-greedy selection.

The cost of a variant is estimated as ``fixed + per_cpu * vCPUs + duration``;
the two coefficients are calibrated from runs measured on this host (each
finished run appends its wall time to the cache), with defaults measured
under TCG until there are enough.  Selection is greedy set cover: each
step takes the variant that adds the most not-yet-covered configuration
features (scheduler, profile, CPU bucket, LLC bucket, SMT, NUMA,
scenario) per estimated second, while it still fits.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass

from ktstr import paths
from ktstr.presets import Variant
from ktstr.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_FIXED_S = 6.0  # boot, calibration, teardown under TCG on a 2-core host
DEFAULT_PER_CPU_S = 0.35
MIN_SAMPLES = 4
_LOCK = threading.Lock()


def _samples_path():
    return paths.cache_dir() / "costs.jsonl"


def record_cost(cpus: int, duration_s: float, wall_s: float) -> None:
    """Remember how long a run took here, for later estimates."""
    with _LOCK:
        path = _samples_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps({"cpus": cpus, "duration_s": duration_s, "wall_s": wall_s}) + "\n")


@dataclass(frozen=True)
class CostModel:
    fixed_s: float
    per_cpu_s: float
    samples: int

    def estimate(self, topology: Topology, duration_s: float) -> float:
        return self.fixed_s + self.per_cpu_s * topology.cpus + duration_s


def calibrated() -> CostModel:
    """Least squares of (wall - duration) on vCPUs over this host's runs."""
    points = []
    bad = 0
    try:
        with open(_samples_path()) as f:
            for line in f:
                try:
                    s = json.loads(line)
                    x, y = float(s["cpus"]), float(s["wall_s"]) - float(s["duration_s"])
                except (ValueError, KeyError, TypeError):
                    bad += 1  # a pure cache: e.g. a line cut short by a crash; skipped
                    continue
                if math.isfinite(x) and math.isfinite(y):
                    points.append((x, y))
    except OSError:
        points = []
    if bad:
        log.info("skipped %d unreadable lines of the cost cache %s", bad, _samples_path())
    points = points[-500:]
    if len(points) < MIN_SAMPLES or len({x for x, _ in points}) < 2:
        return CostModel(DEFAULT_FIXED_S, DEFAULT_PER_CPU_S, len(points))
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = max(0.0, sum((x - mx) * (y - my) for x, y in points) / sxx)
    return CostModel(max(0.0, my - slope * mx), slope, n)


def _bucket(value: int, edges: tuple[int, ...]) -> str:
    for edge in edges:
        if value <= edge:
            return f"<={edge}"
    return f">{edges[-1]}"


def features(scheduler: str, scenario: str, variant: Variant) -> set[tuple[str, str]]:
    t = Topology.parse(variant.topology)
    return {
        ("scheduler", scheduler),
        ("profile", variant.profile or "eevdf"),
        ("cpus", _bucket(t.cpus, (4, 8, 16, 32, 64, 128))),
        ("llcs", _bucket(t.llcs, (1, 2, 4, 8))),
        ("smt", str(t.threads_per_core > 1)),
        ("numa", str(t.numa_nodes)),
        ("scenario", scenario),
    }


@dataclass
class Selection:
    cells: list[tuple[str, Variant]]
    total: int
    seconds: float
    budget_s: float
    covered: int
    features: int

    def summary(self) -> str:
        return (
            f"{len(self.cells)}/{self.total} variants, {self.seconds:.0f}/{self.budget_s:.0f} s,"
            f" {self.covered}/{self.features} configurations covered"
        )


def select(
    cells: list[tuple[str, Variant]],
    scheduler: str,
    duration_s: float,
    budget_s: float,
    model: CostModel | None = None,
) -> Selection:
    """The subset that covers the most configuration features per second, within budget."""
    model = model or calibrated()
    cost = {
        i: model.estimate(Topology.parse(v.topology), duration_s) for i, (_, v) in enumerate(cells)
    }
    feats = {i: features(scheduler, s, v) for i, (s, v) in enumerate(cells)}
    everything = set().union(*feats.values()) if feats else set()
    chosen: list[int] = []
    covered: set = set()
    spent = 0.0
    left = set(cost)
    while left:
        fits = [i for i in left if spent + cost[i] <= budget_s]
        if not fits:
            break
        best = max(fits, key=lambda i: (len(feats[i] - covered) / cost[i], -cost[i], -i))
        if not feats[best] - covered and covered == everything:
            # everything is covered: spend what is left on the cheapest variants, in order
            best = min(fits, key=lambda i: (cost[i], i))
        chosen.append(best)
        covered |= feats[best]
        spent += cost[best]
        left.discard(best)
    chosen.sort()
    return Selection(
        [cells[i] for i in chosen], len(cells), spent, budget_s, len(covered), len(everything)
    )
