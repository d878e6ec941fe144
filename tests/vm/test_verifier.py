"""ktstr verifier in real VMs: the kernel's example schedulers loaded, counted, rejected.

Five cells (1n1l2c1t, a 3 s steady): about 63 s of VM time in all, 7.5 s for the
rejected build, 12-15 s for the others.
"""

import json

import pytest

from ktstr import paths
from tests.helpers import assert_one_sentence, ktstr

pytest_plugins = ["pytester"]
CACHE = str(paths.cache_dir())  # read before pytester points HOME elsewhere


def _clang19_qmap() -> str:
    rows = json.loads(ktstr("schedulers", "list", "--json").stdout)
    return next(r["path"] for r in rows if r["name"] == "scx_qmap" and r["compiler"] == "clang-19")


def test_simple_and_qmap_load_and_every_program_has_its_counts():
    proc = ktstr("verifier", "--scheduler", "scx_simple", "--scheduler", "scx_qmap", "--json")
    assert proc.returncode == 0, proc.stderr
    cells = json.loads(proc.stdout)["cells"]
    assert [c["scheduler"] for c in cells] == ["scx_simple", "scx_qmap"]
    for cell in cells:
        assert cell["attached"] and cell["dispatched"], cell
        names = {p["name"] for p in cell["programs"]}
        prefix = cell["scheduler"].removeprefix("scx_") + "_"
        assert any(n.startswith(prefix + "enqueue") for n in names), names
        assert len(names) == len(cell["programs"])  # full names: none cut to 15 characters
        for prog in cell["programs"]:
            assert prog["verified_insns"] > 0, prog
            assert prog["limit"] == 1_000_000 and prog["states"] is not None
            assert prog["peak_states"] is not None and prog["time_us"] > 0
        assert any(p["states"] > 0 and p["peak_states"] > 0 for p in cell["programs"])
    assert "qmap_cgroup_set_weight" in {p["name"] for p in cells[1]["programs"]}
    # scx_qmap's programs are bigger than scx_simple's
    total = [sum(p["verified_insns"] for p in c["programs"]) for c in cells]
    assert total[1] > total[0]


def test_compare_a_rejected_build_with_one_that_loads():
    # scx_qmap built by clang 19 is refused by the verifier, the clang 22 build loads
    proc = ktstr("verifier", "--compare", _clang19_qmap(), "scx_qmap")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "(REJECTED)" in out.splitlines()[0] and "(attached, dispatched)" in out.splitlines()[1]
    line = next(ln for ln in out.splitlines() if "the verifier rejected" in ln)
    assert "qmap_dequeue: R7 invalid mem access 'scalar'" in line
    assert "instruction before it: " in out and "r7" in out and "verifier log (" in out
    dispatch = next(ln.split() for ln in out.splitlines() if ln.startswith("qmap_dispatch "))
    assert dispatch[1] == "-" and int(dispatch[2]) > 0  # only B has the program


def test_a_kernel_without_sched_ext_is_one_sentence():
    listed = ktstr("kernel", "list").stdout.splitlines()
    without = [ln.split()[0] for ln in listed[2:] if ln.split()[1:2] == ["no"]]
    if not without:
        pytest.skip("no cached kernel without sched_ext")
    proc = ktstr("verifier", "--scheduler", "scx_simple", "--kernel", without[0])
    assert_one_sentence(proc, "lacks CONFIG_SCHED_CLASS_EXT")


PLUGIN_TESTS = """
from ktstr import CgroupDef, Scheduler, ktstr_test

SIMPLE = Scheduler("scx_simple", "scx_simple")


@ktstr_test(topology="1n1l2c1t", scheduler=SIMPLE, duration_s=3)
def test_simple(ctx):
    return ctx.run_defs([CgroupDef("cg_0", workers=2)])
"""


def test_pytest_ktstr_verifier_runs_the_cell_of_each_declared_scheduler(pytester, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", CACHE)  # pytester moves HOME
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--ktstr-verifier", "-k", "ktstr_verifier", "-rA", "-s"
    )
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert "ktstr_verifier[scx_simple]" in text
    assert "attached, dispatched" in text and "simple_enqueue" in text
