"""Scheduler declaration, flag profiles, discovery, and the failure classifier on real logs."""

import json
from pathlib import Path

import pytest

from ktstr.checks.expectations import apply_expectations, validate_expect_error
from ktstr.checks.scheduler import scheduler_health
from ktstr.errors import ConfigError, EnvironmentProblem
from ktstr.results.terminal import bug_summary
from ktstr.scheduler import EEVDF, Flag, Scheduler, from_cli

DATA = Path(__file__).parent.parent / "data"


def sched_findings(name: str):
    record = json.loads((DATA / f"sched-{name}.json").read_text())
    return scheduler_health(record, {})


def test_profiles_power_set_filtered_by_requires_and_excludes():
    s = Scheduler(
        "scx_x",
        "scx_x",
        flags={
            "llc": Flag(("--llc",)),
            "steal": Flag(("--steal",), requires=("llc",)),
            "rr": Flag(("--rr",), excludes=("llc",)),
        },
    )
    names = [p.name for p in s.profiles()]
    assert names == ["default", "llc", "rr", "llc+steal"]
    assert s.profile("steal,llc").args == ("--llc", "--steal")
    with pytest.raises(ConfigError, match="not a valid combination"):
        s.profile("rr,llc")
    with pytest.raises(ConfigError, match="no flag"):
        s.profile("turbo")
    with pytest.raises(ConfigError, match="unknown flag"):
        Scheduler("bad", "bad", flags={"a": Flag(requires=("b",))})


def test_eevdf_and_ops_name():
    assert EEVDF.is_eevdf and from_cli(None) is EEVDF and from_cli("eevdf") is EEVDF
    assert Scheduler("scx_simple", "scx_simple").expected_ops == "simple"
    assert from_cli("/opt/bin/scx_lavd").expected_ops == "lavd"


def test_discovery_order(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    (tmp_path / "path").mkdir()
    s = Scheduler("scx_demo", "scx_demo")
    with pytest.raises(EnvironmentProblem, match="schedulers build"):
        s.resolve_binary()
    cached = tmp_path / "cache/schedulers/7.2/clang-22/bin/scx_demo"
    cached.parent.mkdir(parents=True)
    cached.write_text("")
    older = tmp_path / "cache/schedulers/7.2/clang-19/bin/scx_demo"
    older.parent.mkdir(parents=True)
    older.write_text("")
    assert s.resolve_binary() == cached  # the newer compiler wins
    on_path = tmp_path / "path/scx_demo"
    on_path.write_text("")
    on_path.chmod(0o755)
    assert s.resolve_binary() == on_path
    general = tmp_path / "scx_demo"
    general.write_text("")
    monkeypatch.setenv("KTSTR_SCHEDULER", str(general))
    assert s.resolve_binary() == general
    specific = tmp_path / "specific"
    specific.write_text("")
    monkeypatch.setenv("KTSTR_SCHEDULER_BIN_SCX_DEMO", str(specific))
    assert s.resolve_binary() == specific
    explicit = Scheduler("scx_demo", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="does not exist"):
        explicit.resolve_binary()


@pytest.mark.parametrize(
    ("name", "kind", "needle"),
    [
        ("error_exit", "error_exit", "scx_qmap.bpf.c:388: test triggering error"),
        ("stall", "stall", "did not run for"),
        ("dispatch_loop", "dispatch_loop", "stopped scheduling"),
        ("kthread_stall", "kthread_stall", "the kernel thread rcu_preempt[15] did not run for"),
        ("load_failed", "load_failed", "R7 invalid mem access 'scalar'"),
        ("detached", "detached", "did not attach (exit 1)"),
    ],
)
def test_classifier_on_captured_logs(name, kind, needle):
    findings = sched_findings(name)
    assert len(findings) == 1
    assert findings[0].status == "fail" and findings[0].kind == kind
    assert needle in findings[0].message
    if kind != "load_failed" and kind != "detached":  # the kernel said why: quote it
        assert 'kernel: "sched_ext: BPF scheduler' in findings[0].message


def test_clean_run_passes_and_notes_unregistration():
    (f,) = sched_findings("clean")
    assert f.status == "pass" and "unregistered cleanly" in f.message


def test_crash_by_signal_and_silent_exit():
    base = json.loads((DATA / "sched-clean.json").read_text())
    events = [
        e for e in base["scheduler"]["events"] if e["event"] in ("started", "state", "attached")
    ][:6]
    crashed = dict(
        base["scheduler"],
        events=events + [{"event": "exited", "signal": 11, "core": False, "at_s": 3.0}],
        kmsg=[],
    )
    (f,) = scheduler_health({"scheduler": crashed}, {})
    assert f.kind == "crashed" and "SIGSEGV" in f.message
    silent = dict(crashed, events=events + [{"event": "exited", "code": 0, "at_s": 3.0}])
    (f,) = scheduler_health({"scheduler": silent}, {})
    assert f.kind == "detached" and "status 0" in f.message


def test_bug_summary_prefers_the_cause():
    record = {
        "findings": [
            {"check": "not_stuck", "status": "fail", "kind": "stuck", "message": "worker 0 stuck"},
            {"check": "scheduler", "status": "fail", "kind": "stall", "message": "qmap stalled"},
        ]
    }
    assert bug_summary(record) == "BUG SUMMARY: [scheduler/stall] qmap stalled"
    assert bug_summary({"findings": []}) is None


def test_expect_error_pins_a_known_bug():
    findings = sched_findings("error_exit")
    passed = apply_expectations(findings, {"error": r"test triggering error"})
    assert all(f.status != "fail" for f in passed)
    clean = sched_findings("clean")
    missing = apply_expectations(clean, {"error": r"test triggering error"})
    assert any(f.kind == "expected_error_missing" for f in missing)
    assert any(
        f.kind == "expected_failure_missing" for f in apply_expectations(clean, {"fail": True})
    )
    for everything in (".*", "", "x|", "(?:)"):
        with pytest.raises(ConfigError, match="matches any text"):
            validate_expect_error(everything)
    with pytest.raises(ConfigError, match="not a valid regex"):
        validate_expect_error("(")


def test_watchdog_timeout_goes_through_the_schedulers_own_option():
    s = Scheduler(
        "scx_x",
        "scx_x",
        args=("-v",),
        watchdog_timeout_s=2.5,
        watchdog_args=("--timeout-ms", "{ms}"),
    )
    assert s.profile(None).args == ("-v", "--timeout-ms", "2500")
    with pytest.raises(ConfigError, match="watchdog_args"):
        Scheduler("scx_y", "scx_y", watchdog_timeout_s=1).profiles()


def test_debug_dump_and_full_output_saved(tmp_path):
    from ktstr.record.builder import write_scheduler_logs

    sched = json.loads((DATA / "sched-stall.json").read_text())["scheduler"]
    write_scheduler_logs(sched, tmp_path)
    dump = (tmp_path / "sched-debug-dump.txt").read_text()
    assert "DEBUG DUMP" in dump and dump.rstrip().splitlines()[-1].startswith("EXIT:")
    assert (tmp_path / "scheduler.log").read_text().count("\n") == len(sched["output"])
    assert sched["debug_dump"].endswith("sched-debug-dump.txt")


def test_kernel_panic_under_a_scheduler_is_its_own_finding():
    record = json.loads((DATA / "sched-clean.json").read_text())
    record["console"] = (DATA / "console-oops-int3.log").read_text().splitlines()
    (f,) = scheduler_health(record, {})
    assert f.kind == "kernel_panic" and "Kernel panic - not syncing" in f.message


def test_kernel_args_reach_the_vm_command_line():
    from ktstr.topology import Topology
    from ktstr.vm.qemu import VmConfig, build_argv

    argv = build_argv(
        VmConfig(
            "/k",
            "/i",
            Topology.parse("1n1l1c1t"),
            "tcg",
            cmdline=["sched_ext.slice_bypass_us=5000"],
        )
    )
    assert argv[argv.index("-append") + 1].endswith("sched_ext.slice_bypass_us=5000")


def test_a_watchdog_that_could_not_check_in_is_a_dispatch_loop_only_when_a_cpu_sat_in_schedule():
    record = json.loads((DATA / "sched-dispatch_loop.json").read_text())
    output = record["scheduler"]["output"]
    start = next(i for i, o in enumerate(output) if o["line"].strip() == "Backtrace:")
    # The same ejection, fired from a busy CPU's tick: the watchdog's worker starved.
    trigger = next(o for o in output if "triggered exit kind" in o["line"])
    assert trigger["line"].startswith("swapper/3[0]")
    trigger["line"] = "python3.11[127] triggered exit kind 1026 on CPU 3:"
    (f,) = scheduler_health(record, {})
    assert f.kind == "kthread_stall" and "watchdog's own kernel worker" in f.message
    trigger["line"] = "swapper/3[0] triggered exit kind 1026 on CPU 3:"
    for o in output[start + 1 : start + 17]:
        o["line"] = o["line"].replace("__schedule", "do_syscall_64")
    (f,) = scheduler_health(record, {})
    assert f.kind == "kthread_stall"


def test_kernel_threads_beyond_rcu_and_kworkers_are_named_as_such():
    from ktstr.checks.scheduler import _KTHREAD

    for name in ("kdamond.0", "kworker/u17:0", "rcu_preempt", "ksoftirqd/3", "khugepaged"):
        assert _KTHREAD.match(name), name
    for name in ("python3.11", "stress-ng", "scx_qmap"):
        assert not _KTHREAD.match(name), name


def test_the_guest_saying_pf_kthread_decides_over_the_name():
    record = json.loads((DATA / "sched-kthread_stall.json").read_text())
    (line,) = [k for k in record["scheduler"]["kmsg"] if "failed to run" in k["text"]]
    line["text"] = line["text"].replace("rcu_preempt[15]", "kfoo_new[15]")  # a name we lack
    (f,) = scheduler_health(record, {})
    assert f.kind == "stall"  # by name: not known as a kernel thread
    line["task_kthread"] = True  # the guest read PF_KTHREAD of pid 15
    (f,) = scheduler_health(record, {})
    assert f.kind == "kthread_stall" and "the kernel thread kfoo_new[15]" in f.message
    line["text"] = line["text"].replace("kfoo_new[15]", "kworker/u8:2[15]")
    line["task_kthread"] = False  # a user task that named itself like a kernel thread
    (f,) = scheduler_health(record, {})
    assert f.kind == "stall"
