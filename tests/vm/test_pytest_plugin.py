"""The pytest front door: @ktstr_test in a user's test file, run by pytest itself."""

import os

from ktstr import paths

pytest_plugins = ["pytester"]
CACHE = str(paths.cache_dir())  # read before pytester points HOME elsewhere

USER_TESTS = """
from ktstr import CgroupDef, Disk, Scheduler, Throttle, ktstr_test
from ktstr.scenario.work import io_rand_read

QMAP_ERROR = Scheduler("scx_qmap", "scx_qmap", args=("-e", "100"))


@ktstr_test(topology="1n2l2c1t", duration_s=4, min_llcs=2)
def test_two_cgroups(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2), CgroupDef("cg_1", workers=2)])


@ktstr_test(topology="1n2l2c1t", scheduler=QMAP_ERROR, duration_s=6)
def test_broken_scheduler(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])


@ktstr_test(topology="1n1l2c1t", min_llcs=4)
def test_needs_more_llcs(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])


@ktstr_test(topology="1n1l2c1t", duration_s=3, disks=[Disk("8MiB", throttle=Throttle(iops=100))])
def test_disk_reads(ctx):
    record = ctx.run_defs([CgroupDef("io", workers=1, work=io_rand_read())])
    assert record["disks"][0]["workers"]["iops"] > 0
    return record
"""


def test_ktstr_test_pass_fail_skip_with_bug_summary(pytester, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", CACHE)  # pytester moves HOME
    pytester.makepyfile(test_user=USER_TESTS)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={junit}", "-rA")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    text = result.stdout.str()
    assert "BUG SUMMARY: [scheduler/error_exit]" in text
    assert "test triggering error" in text
    assert "Traceback" not in text and "ktstr/runner.py" not in text
    assert "needs at least 4 LLCs" in text
    xml = junit.read_text()
    assert "BUG SUMMARY: [scheduler/error_exit]" in xml
    assert os.environ.get("KTSTR_RUNS_DIR")  # the runs went to the suite's tmp dir


GAUNTLET_TESTS = """
from ktstr import CgroupDef, Flag, Scheduler, ktstr_test

SIMPLE = Scheduler("scx_simple", "scx_simple")
QMAP = Scheduler("scx_qmap", "scx_qmap", flags={"stall": Flag(("-t", "50"))})


@ktstr_test(duration_s=4, max_cpus=4)
def test_eevdf(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])


@ktstr_test(scheduler=SIMPLE, duration_s=4, max_cpus=4)
def test_simple(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])


@ktstr_test(scheduler=QMAP, duration_s=12, max_cpus=4, min_llcs=2)
def test_qmap(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])
"""


def test_pytest_gauntlet_fails_exactly_the_broken_variants(pytester, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", CACHE)
    pytester.makepyfile(test_g=GAUNTLET_TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-rA",
        "--ktstr-gauntlet",
        "--ktstr-presets=tiny-1llc,tiny-2llc,tiny-smt,numa2-2llc",
        "-n",
        "2",
    )
    outcomes = result.parseoutcomes()
    text = result.stdout.str()
    # EEVDF and scx_simple on the 3 presets within 4 vCPUs; scx_qmap on the one with
    # 2 LLCs: its default profile passes there and its stall profile fails.
    assert outcomes.get("passed") == 7 and outcomes.get("failed") == 1, text
    assert "test_qmap[tiny-2llc/stall]" in text.split("FAILED")[-1]
    assert "PASSED test_g.py::test_qmap[tiny-2llc/default]" in text
    assert "BUG SUMMARY: [scheduler/" in text


def test_xdist_workers_share_the_vm_budget(pytester, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", CACHE)
    monkeypatch.setenv("KTSTR_VM_SLOTS", "1")  # two workers, one VM at a time
    pytester.makepyfile(test_x=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
