"""``ktstr gauntlet``: scenarios × topology presets × flag profiles, one VM each.

Variants run one after another (a parallel pool within a CPU and memory
budget is not built yet); every record is written as soon as its variant
ends, and a summary matrix follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ktstr.presets import DEFAULT_MAX_CPUS, Variant, expand, shard
from ktstr.pytest_plugin import Constraints
from ktstr.runner import run_scenario
from ktstr.scenario.catalog import get
from ktstr.scheduler import Scheduler
from ktstr.topology import Topology

SYMBOL = {"pass": "pass", "fail": "FAIL", "skip": "skip", "inconclusive": "inc?"}


@dataclass
class Cell:
    scenario: str
    variant: Variant
    verdict: str
    run_dir: str
    summary: str | None


def plan(
    scenarios: list[str],
    scheduler: Scheduler,
    presets: list[str] | None,
    profiles: list[str] | None,
    max_cpus: int = DEFAULT_MAX_CPUS,
    shard_of: tuple[int, int] | None = None,
) -> list[tuple[str, Variant]]:
    """Every (scenario, variant) to run, in a deterministic order."""
    for name in scenarios:
        get(name)  # unknown names fail before anything boots
    if scheduler.is_eevdf:
        chosen = None
    else:
        chosen = profiles or [p.name for p in scheduler.profiles()]
        for p in chosen:
            scheduler.profile(p)
    variants = expand(Constraints(max_cpus=max_cpus).reason, chosen, presets)
    if shard_of:
        variants = shard(variants, *shard_of)
    return [(s, v) for s in scenarios for v in variants]


def run(
    cells: list[tuple[str, Variant]],
    scheduler: Scheduler,
    duration_s: float | None,
    kernel: str | None,
    accel: str | None,
    on_done: Callable[[Cell, int, int], None],
) -> list[Cell]:
    from ktstr.checks.scheduler import bug_summary

    out = []
    for index, (scenario, variant) in enumerate(cells, start=1):
        record, run_dir = run_scenario(
            get(scenario),
            Topology.parse(variant.topology),
            kernel,
            accel,
            duration_s,
            scheduler=scheduler,
            profile=variant.profile,
        )
        cell = Cell(scenario, variant, record["verdict"], str(run_dir), bug_summary(record))
        out.append(cell)
        on_done(cell, index, len(cells))
    return out


def matrix(cells: list[Cell]) -> str:
    """Scenario rows × variant columns, each cell pass/FAIL/skip."""
    columns = list(dict.fromkeys(c.variant.id for c in cells))
    rows = list(dict.fromkeys(c.scenario for c in cells))
    by = {(c.scenario, c.variant.id): c.verdict for c in cells}
    width = max([len(r) for r in rows] + [8])
    head = " ".join(col.rjust(max(len(col), 4)) for col in columns)
    lines = [f"{'scenario'.ljust(width)} {head}"]
    for r in rows:
        cells_text = " ".join(
            SYMBOL.get(by.get((r, col), ""), "-").rjust(max(len(col), 4)) for col in columns
        )
        lines.append(f"{r.ljust(width)} {cells_text}")
    return "\n".join(lines)
