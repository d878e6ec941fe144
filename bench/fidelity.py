#!/usr/bin/env python3
"""Fidelity of the verdicts, measured: does each check catch the fault it exists for,
and does it leave correct schedulers alone?

(a) Detection matrix: every fault of the fixture scheduler scx_ktstr x topologies
    (one with SMT, one with 2 NUMA nodes, one with an odd LLC count), N runs each:
    how often the intended check failed with the intended kind.
(b) False-failure table: every CPU catalog scenario x the default gauntlet presets up to
    16 vCPUs x correct schedulers (EEVDF, scx_simple), N runs each: how often each
    check failed.

Every run is one line of a results file (``--results``, JSON lines) the moment it
ends, so an interrupted bench resumes where it stopped and shards (``--shard i/N``)
can run on several hosts and be merged by concatenating their files.  Runs go through
the gauntlet's pool (``-j``).  ``--json`` prints
``{"detection": {fault: {topology: [hits, runs]}},
  "false_failures": {scheduler: {scenario: {preset: [fails, runs]}}},
  "checks": {scheduler: {check: [fails, runs]}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ktstr import gauntlet
from ktstr.checks import judge
from ktstr.errors import ConfigError
from ktstr.fixture_sched import NAME as FIXTURE
from ktstr.fixture_sched import knob_args
from ktstr.presets import DEFAULT_MAX_CPUS, PRESETS, Variant, parse_shard
from ktstr.record import load
from ktstr.scenario.catalog import CATALOG
from ktstr.scheduler import EEVDF, Flag, Scheduler, from_cli
from ktstr.topology import Topology


@dataclass(frozen=True)
class Fault:
    """A fixture misbehaviour, the scenario that exposes it, and who must catch it."""

    args: tuple[str, ...]
    scenario: str
    check: str
    kind: str


FAULTS = {
    "pile": Fault(knob_args(pile=0), "steady", "work_conservation", "idle_while_waiting"),
    "idle_waste": Fault(
        knob_args(idle_waste=True), "steady", "work_conservation", "idle_while_waiting"
    ),
    "starve_cgroup": Fault(
        ("--write-knob-after=2:starve_cgroup=ktstr/cg_0,3000",), "steady", "not_stuck", "stuck"
    ),
    "pile_cgroup": Fault(knob_args(pile_cgroup="ktstr/cg_0"), "steady", "imbalance", "imbalanced"),
    "unfair_cgroup": Fault(
        knob_args(unfair_cgroup="ktstr/cg_0,8"), "steady", "fairness", "weight_mismatch"
    ),
    # 8x, as for unfair_cgroup: on 8 vCPUs under TCG a late tick ends most slices, so 2x
    # slices give the favoured tasks only about 1.2x the CPU of the others
    "unfair_odd": Fault(knob_args(unfair_odd=8), "steady", "fairness", "unfair"),
    "stall_after_s": Fault(
        knob_args(stall_after_s=2) + ("--timeout-ms", "3000"), "steady", "scheduler", "stall"
    ),
    "error_after_s": Fault(knob_args(error_after_s=2), "steady", "scheduler", "error_exit"),
}
DETECTION_TOPOLOGIES = ("smt-2llc", "numa2-2llc", "odd-3llc")
CORRECT = ("eevdf", "scx_simple")


def false_failure_presets() -> list[str]:
    return [name for name, topo in PRESETS.items() if Topology.parse(topo).cpus <= DEFAULT_MAX_CPUS]


def cpu_scenarios() -> list[str]:
    return [name for name, s in CATALOG.items() if not s.disks]


def plan(runs: int) -> list[dict]:
    """Every run of the bench, each with a key that names it uniquely."""
    out = []
    for i in range(runs):
        for fault, f in FAULTS.items():
            for preset in DETECTION_TOPOLOGIES:
                out.append(
                    {
                        "part": "detection",
                        "fault": fault,
                        "scenario": f.scenario,
                        "scheduler": FIXTURE,
                        "preset": preset,
                        "rep": i,
                    }
                )
        for sched in CORRECT:
            for scenario in cpu_scenarios():
                for preset in false_failure_presets():
                    out.append(
                        {
                            "part": "false_failures",
                            "fault": None,
                            "scenario": scenario,
                            "scheduler": sched,
                            "preset": preset,
                            "rep": i,
                        }
                    )
    return out


def key(run: dict) -> str:
    return "/".join(
        str(run[k]) for k in ("part", "fault", "scenario", "scheduler", "preset", "rep")
    )


def done_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text().splitlines():
        try:
            out.add(json.loads(line)["key"])
        except (ValueError, KeyError):
            continue  # a line cut by a crash: that run is redone
    return out


def scheduler_for(run: dict) -> Scheduler:
    if run["fault"]:
        return Scheduler(FIXTURE, FIXTURE, flags={run["fault"]: Flag(FAULTS[run["fault"]].args)})
    return EEVDF if run["scheduler"] == "eevdf" else from_cli(run["scheduler"])


def execute(todo: list[dict], results: Path, duration: float | None, jobs: int) -> None:
    """Run what is left, grouped by scheduler (the pool runs one scheduler at a time)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in todo:
        groups[run["fault"] or run["scheduler"]].append(run)
    for runs in groups.values():
        scheduler = scheduler_for(runs[0])
        cells = [
            (
                r["scenario"],
                Variant(
                    r["preset"],
                    PRESETS[r["preset"]],
                    r["fault"] if r["fault"] else (None if scheduler.is_eevdf else "default"),
                ),
            )
            for r in runs
        ]

        def done(cell, finished: int, total: int, runs=runs, cells=cells) -> None:
            run = runs[cells.index((cell.scenario, cell.variant))]
            record, _ = load(cell.run_dir)
            line = {
                "key": key(run),
                **run,
                "verdict": record.get("verdict"),
                "run_dir": cell.run_dir,
                "findings": [
                    {k: f.get(k) for k in ("check", "status", "kind")}
                    for f in record.get("findings", [])
                ],
            }
            with results.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(f"[{finished}/{total}] {key(run)}: {record.get('verdict')}", file=sys.stderr)

        gauntlet.run(cells, scheduler, duration, None, None, done, gauntlet.default_budget(jobs))


def rejudge(path: Path) -> int:
    """Judge every stored run again with the checks as they are now, rewriting the
    results file in place (a run whose record is gone keeps its line): measures change,
    and a bench must not need its VMs again to show what they say now."""
    if not path.exists():
        return 0
    lines, changed = [], 0
    for line in path.read_text().splitlines():
        try:
            run = json.loads(line)
            record, _ = load(run["run_dir"])
        except (ValueError, KeyError, OSError, ConfigError):
            lines.append(line)
            continue
        verdict = judge(record)
        run["verdict"] = verdict.status
        run["findings"] = [
            {"check": f.check, "status": f.status, "kind": f.kind} for f in verdict.findings
        ]
        lines.append(json.dumps(run))
        changed += 1
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(f"{ln}\n" for ln in lines))
    tmp.replace(path)
    return changed


def summarize(path: Path) -> dict:
    detection: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    false_failures: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: [0, 0])))
    checks: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            run = json.loads(line)
        except ValueError:
            continue
        findings = run["findings"]
        if run["part"] == "detection":
            f = FAULTS[run["fault"]]
            hit = any(
                x["check"] == f.check and x["status"] == "fail" and x["kind"] == f.kind
                for x in findings
            )
            cell = detection[run["fault"]][run["preset"]]
            cell[0] += hit
            cell[1] += 1
        else:
            cell = false_failures[run["scheduler"]][run["scenario"]][run["preset"]]
            cell[0] += run["verdict"] == "fail"
            cell[1] += 1
            for name in {x["check"] for x in findings}:
                failed = any(x["check"] == name and x["status"] == "fail" for x in findings)
                checks[run["scheduler"]][name][0] += failed
                checks[run["scheduler"]][name][1] += 1
    return json.loads(
        json.dumps({"detection": detection, "false_failures": false_failures, "checks": checks})
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", "--runs", type=int, default=3, help="repeats of every cell (default 3)")
    ap.add_argument(
        "--results",
        type=Path,
        default=Path("fidelity.jsonl"),
        help="JSON lines, appended as runs finish; resumed from (default %(default)s)",
    )
    ap.add_argument("--shard", default=None, metavar="i/N", help="run only this shard of the runs")
    ap.add_argument(
        "--part", choices=("detection", "false_failures"), default=None, help="run only one part"
    )
    ap.add_argument("--presets", default=None, help="only these presets (a,b)")
    ap.add_argument("--scenarios", default=None, help="only these scenarios (a,b)")
    ap.add_argument("--schedulers", default=None, help="only these schedulers (eevdf,scx_simple)")
    ap.add_argument(
        "--duration", type=float, default=None, help="seconds per run (default: each scenario's)"
    )
    ap.add_argument("-j", "--jobs", type=int, default=None, help="VMs at once (default: host CPUs)")
    ap.add_argument(
        "--summary-only", action="store_true", help="print what --results holds, run nothing"
    )
    ap.add_argument(
        "--rejudge",
        action="store_true",
        help="judge the stored runs again with today's checks (no VM), then summarize",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.rejudge:
        print(f"fidelity: {rejudge(args.results)} runs judged again", file=sys.stderr)
    elif not args.summary_only:
        runs = [
            r
            for r in plan(args.runs)
            if args.part in (None, r["part"])
            and (not args.presets or r["preset"] in args.presets.split(","))
            and (not args.scenarios or r["scenario"] in args.scenarios.split(","))
            and (not args.schedulers or r["scheduler"] in args.schedulers.split(","))
        ]
        if args.shard:  # every count-th run, from a fixed order: disjoint, and together all
            index, count = parse_shard(args.shard)
            runs = sorted(runs, key=key)[index - 1 :: count]
        finished = done_keys(args.results)
        todo = [r for r in runs if key(r) not in finished]
        print(
            f"fidelity: {len(runs)} runs, {len(runs) - len(todo)} already in {args.results}",
            file=sys.stderr,
        )
        execute(todo, args.results, args.duration, args.jobs)
    summary = summarize(args.results)
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    print("detection (intended check failed / runs):")
    for fault, cells in sorted(summary["detection"].items()):
        f = FAULTS[fault]
        row = "  ".join(f"{p} {h}/{n}" for p, (h, n) in sorted(cells.items()))
        print(f"  {fault:<14} -> {f.check}/{f.kind}: {row}")
    print("false failures (failed / runs):")
    for sched, scenarios in sorted(summary["false_failures"].items()):
        for scenario, cells in sorted(scenarios.items()):
            fails = sum(h for h, _ in cells.values())
            total = sum(n for _, n in cells.values())
            worst = ", ".join(f"{p} {h}/{n}" for p, (h, n) in sorted(cells.items()) if h)
            print(
                f"  {sched:<10} {scenario:<18} {fails}/{total}" + (f"  ({worst})" if worst else "")
            )
    print("per check (failed / runs that judged it):")
    for sched, per in sorted(summary["checks"].items()):
        print(f"  {sched}: " + ", ".join(f"{c} {h}/{n}" for c, (h, n) in sorted(per.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
