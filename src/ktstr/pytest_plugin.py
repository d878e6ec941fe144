"""The ktstr pytest plugin: ``@ktstr_test`` and the options every ktstr test run shares.

Registered through the ``pytest11`` entry point, so any project with
ktstr installed can write::

    @ktstr_test(topology="1n2l2c1t", scheduler=MY_SCHED, duration_s=6, min_llcs=2)
    def test_two_cgroups(ctx):
        return ctx.run_defs([CgroupDef("cg_0", workers=2), CgroupDef("cg_1", workers=2)])

A failing run fails the test with the BUG SUMMARY and the findings (no
harness traceback); a topology the test's constraints exclude skips it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ktstr.disk import Disk, check_disks, check_shareable
from ktstr.errors import ConfigError, KtstrError
from ktstr.monitor.settings import MonitorSettings, check_period
from ktstr.presets import (  # Constraints is re-exported: user code imports it from here
    DEFAULT_MAX_CPUS,
    Constraints,
    Variant,
    expand,
    parse_shard,
    preset,
    shard,
)
from ktstr.scenario.model import CgroupDef, Checks, Scenario, Step, run_defs, run_steps
from ktstr.scheduler import EEVDF, Scheduler
from ktstr.topology import Topology, as_topology


@dataclass
class KtstrContext:
    """What a ``@ktstr_test`` function receives: run helpers bound to its declaration."""

    name: str
    topology: Topology
    scheduler: Scheduler = EEVDF
    duration_s: float = 12.0
    profile: str | None = None
    checks: Checks = field(default_factory=Checks)
    expect: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    disks: tuple[Disk, ...] = ()  # when given, they replace a scenario's own disks
    include_files: tuple[str, ...] = ()  # added to a scenario's own
    monitor: MonitorSettings | None = None  # the host-side monitor (None: its default)

    def run(self, scenario: Scenario) -> dict:
        from ktstr.runner import run_scenario

        record, run_dir = run_scenario(
            scenario,
            self.topology,
            duration_s=scenario.duration_s,
            scheduler=self.scheduler,
            profile=self.profile,
            expect=self.expect,
            disks=self.disks or None,
            include=self.include_files,
            monitor=self.monitor,
        )
        record["_run_dir"] = str(run_dir)
        self.records.append(record)
        return record

    def run_defs(self, defs: Sequence[CgroupDef]) -> dict:
        return self.run(run_defs(defs, self.name, self.duration_s, self.checks))

    def run_steps(self, steps: Sequence[Step]) -> dict:
        return self.run(run_steps(steps, self.name, self.duration_s, self.checks))


def failure_report(record: dict) -> str:
    """BUG SUMMARY first, then every failing finding, then where the evidence is."""
    from ktstr.results.terminal import bug_summary

    lines = [bug_summary(record) or f"verdict {record.get('verdict')}"]
    for f in record.get("findings", []):
        if f["status"] in ("fail", "inconclusive"):
            lines.append(f"  - [{f['check']}/{f['kind']}] {f['message']}")
    lines.append(f"run dir: {record.get('_run_dir', '?')}")
    return "\n".join(lines)


def judge_outcome(record: dict) -> None:
    verdict = record.get("verdict")
    if verdict == "skip":
        pytest.skip(record.get("skipped", "the scenario cannot run on this topology"))
    if verdict != "pass":
        pytest.fail(failure_report(record), pytrace=False)


def ktstr_test(
    topology: Topology | str | None = None,
    scheduler: Scheduler = EEVDF,
    duration_s: float = 12.0,
    profile: str | None = None,
    checks: Checks | None = None,
    expect_error: str | None = None,
    expect_fail: bool = False,
    disks: Sequence[Disk] = (),
    include_files: Sequence[str] = (),
    monitor_period_s: float | None = None,
    monitor_enforce: bool = False,
    **constraints: object,
) -> Callable:
    """Declare a VM test; the function gets a KtstrContext and returns a run record.

    ``disks`` attaches virtio disks to every run of the test (I/O work
    names them by index); ``include_files`` are host files or directories
    the guest gets under /include-files/.  ``monitor_period_s`` sets the
    host-side monitor's period (0 off, None its default) and
    ``monitor_enforce`` lets its checks fail the test.
    """
    limits = Constraints(**constraints)  # type: ignore[arg-type]
    if monitor_period_s is not None:
        check_period(float(monitor_period_s), "monitor_period_s")
    monitor = MonitorSettings(monitor_period_s, monitor_enforce)
    declared_disks = check_disks(disks)
    included = tuple(map(str, [include_files] if isinstance(include_files, str) else include_files))
    if expect_error:
        from ktstr.checks.expectations import validate_expect_error

        validate_expect_error(expect_error)

    def decorate(fn: Callable[[KtstrContext], dict]) -> Callable[..., None]:
        @functools.wraps(fn)
        def test(ktstr_variant: Variant | None) -> None:
            declared = topology or scheduler.topology
            topo = as_topology(ktstr_variant.topology if ktstr_variant else declared)
            chosen = ktstr_variant.profile if ktstr_variant else profile
            reason = limits.reason(topo)
            if reason:
                pytest.skip(reason)
            expect = {"error": expect_error, "fail": expect_fail}
            ctx = KtstrContext(
                fn.__name__,
                topo,
                scheduler,
                duration_s,
                chosen,
                checks or Checks(),
                expect,
                disks=declared_disks,
                include_files=included,
                monitor=monitor,
            )
            error = None
            try:
                record = fn(ctx)
            except KtstrError as err:
                error = err
            if error is not None:  # outside the except block: no chained traceback
                pytest.fail(f"ktstr: {error}", pytrace=False)
            if record is None:
                pytest.fail(
                    "a @ktstr_test function must return the record of ctx.run_*()", pytrace=False
                )
            judge_outcome(record)

        del test.__wrapped__  # pytest must see the wrapper's signature, not fn's (ctx)
        test.ktstr = {  # type: ignore[attr-defined]
            "scheduler": scheduler,
            "constraints": limits,
            "duration_s": duration_s,
            "disks": declared_disks,
            "topology": topology,
            "include_files": included,
        }
        return pytest.mark.vm(test)

    return decorate


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ktstr")
    group.addoption(
        "--ktstr-kernel",
        default=None,
        help="kernel for VM tests (path or cached release; sets KTSTR_KERNEL)",
    )
    group.addoption(
        "--ktstr-accel",
        default=None,
        choices=["auto", "kvm", "tcg"],
        help="accelerator for VM tests (sets KTSTR_ACCEL)",
    )
    group.addoption(
        "--ktstr-gauntlet",
        action="store_true",
        help="run each @ktstr_test on every topology preset its constraints accept "
        f"(at most {DEFAULT_MAX_CPUS} vCPUs unless the test says otherwise) "
        "x every flag profile of its scheduler",
    )
    group.addoption(
        "--ktstr-presets",
        default=None,
        help="comma-separated gauntlet presets (default: every preset the test accepts, up to "
        f"{DEFAULT_MAX_CPUS} vCPUs); a named preset runs whatever its size, and one the "
        "test's constraints exclude is reported skipped with the reason",
    )
    group.addoption(
        "--ktstr-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per test, run the gauntlet variants that cover the most configurations "
        "within this many estimated seconds",
    )
    group.addoption(
        "--ktstr-shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N of the gauntlet (deterministic, balanced by cost)",
    )
    group.addoption(
        "--ktstr-verifier",
        action="store_true",
        help="add one item per sched_ext scheduler the collected @ktstr_tests declare: "
        "'ktstr verifier' for it (loads, attaches, dispatches; per-program verifier "
        "figures); select only these with -k ktstr_verifier",
    )


@pytest.fixture
def ktstr_variant() -> None:
    """A plain run: the test's own topology (the gauntlet parametrizes this instead)."""
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    info = getattr(metafunc.function, "ktstr", None)
    config = metafunc.config
    if info is None or not config.getoption("--ktstr-gauntlet"):
        return
    limits: Constraints = info["constraints"]
    names = [n.strip() for n in (config.getoption("--ktstr-presets") or "").split(",") if n.strip()]
    if limits.max_cpus is None and not names:  # the cap bounds the default selection only
        limits = Constraints(**{**limits.__dict__, "max_cpus": DEFAULT_MAX_CPUS})
    scheduler: Scheduler = info["scheduler"]
    profiles = None if scheduler.is_eevdf else [p.name for p in scheduler.profiles()]
    problem = None
    try:
        variants = expand(limits.reason, profiles, names or None)
        # a preset named explicitly that the test's constraints exclude is shown skipped
        # with the reason, not dropped without a word
        excluded = [(n, limits.reason(preset(n))) for n in names if limits.reason(preset(n))]
    except ConfigError as err:
        problem = err
    if problem is not None:  # outside the except block: no chained traceback
        pytest.fail(f"ktstr: --ktstr-presets: {problem}", pytrace=False)
    if config.getoption("--ktstr-shard"):
        variants = shard(variants, *parse_shard(config.getoption("--ktstr-shard")))
    if config.getoption("--ktstr-budget"):
        from ktstr.budget import select

        picked = select(
            [("", v) for v in variants],
            scheduler.name,
            info["duration_s"],
            config.getoption("--ktstr-budget"),
        )
        variants = [v for _, v in picked.cells]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set by pytest-xdist
    error = None
    try:
        check_shareable(
            [info["disks"]] * len(variants), min(workers, len(variants)), serially="-n 0"
        )
    except ConfigError as err:
        error = err
    if error is not None:  # outside the except block: no chained traceback
        pytest.fail(f"ktstr: {metafunc.function.__name__}: {error}", pytrace=False)
    params = [pytest.param(v, id=v.id) for v in variants] + [
        pytest.param(None, id=name, marks=pytest.mark.skip(reason=reason))
        for name, reason in excluded
    ]
    metafunc.parametrize("ktstr_variant", params)


class VerifierItem(pytest.Item):
    """``--ktstr-verifier``: one scheduler's verifier cell, on the kernel the tests use."""

    def __init__(self, *, scheduler: Scheduler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scheduler = scheduler
        self.add_marker(pytest.mark.vm)

    def runtest(self) -> None:
        from ktstr.verifier import report, sweep

        error = None
        try:
            sweep.check_cells([self.scheduler], [None])
            cell = sweep.run_cell(self.scheduler, None, Topology.parse(sweep.DEFAULT_TOPOLOGY))
        except KtstrError as err:
            error = err
        if error is not None:  # outside the except block: no chained traceback
            pytest.fail(f"ktstr: {error}", pytrace=False)
        self.user_properties.append(("ktstr_verifier", json.dumps(cell)))
        lines = report.sweep_lines([cell])
        if not (cell["attached"] and cell["dispatched"]):
            pytest.fail("\n".join(lines), pytrace=False)
        for line in report.warnings([cell]):
            self.warn(pytest.PytestWarning(line))
        print("\n".join(lines))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"ktstr verifier {self.scheduler.name}"


@pytest.hookimpl(tryfirst=True)  # before -k and -m select among the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--ktstr-verifier"):
        return
    seen: dict[tuple, pytest.Item] = {}
    for item in items:
        info = getattr(getattr(item, "function", None), "ktstr", None)
        sched: Scheduler | None = info["scheduler"] if info else None
        if sched is not None and not sched.is_eevdf:
            seen.setdefault((sched.name, sched.binary, tuple(sched.args)), item)
    names: dict[str, int] = {}
    for (name, _, _), first in seen.items():
        names[name] = names.get(name, 0) + 1
        label = name if names[name] == 1 else f"{name}-{names[name]}"
        items.append(
            VerifierItem.from_parent(
                first.parent,
                name=f"ktstr_verifier[{label}]",
                scheduler=first.function.ktstr["scheduler"],  # type: ignore[attr-defined]
            )
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots a real kernel under QEMU (slow)")
    if config.getoption("--ktstr-kernel"):
        os.environ["KTSTR_KERNEL"] = config.getoption("--ktstr-kernel")
    if config.getoption("--ktstr-accel"):
        os.environ["KTSTR_ACCEL"] = config.getoption("--ktstr-accel")
