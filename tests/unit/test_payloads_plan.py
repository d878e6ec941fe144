"""Payload declarations, their ops in a plan, and their programs packed for the guest."""

import os
import shutil

import pytest

from ktstr import CgroupDef, HoldSpec, Metric, Op, Payload, Scenario, Step, Topology
from ktstr.errors import ConfigError
from ktstr.initramfs import cpio
from ktstr.payloads import pack
from ktstr.payloads.catalog import HACKBENCH, PAYLOADS, STRESS_NG
from ktstr.scenario.plan import compile_plan
from tests.helpers import assert_one_sentence, ktstr


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "a b"}, "is not a plain name"),
        ({"output": "xml"}, "output 'xml' is unknown"),
        ({"stream": "tty"}, "stream 'tty' is unknown"),
        ({"args": "-g 2"}, "args is one string"),
        ({"metrics": (Metric("m", "x"),)}, "reads only its exit code"),
        ({"output": "regex", "metrics": (Metric("m", "no group"),)}, "has 0 groups"),
        ({"output": "regex", "metrics": (Metric("m", "("),)}, "pattern is invalid"),
        ({"output": "json", "metrics": (Metric("m", "a"), Metric("m", "b"))}, "repeats"),
    ],
)
def test_bad_declarations_are_one_sentence(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        Payload(**{"name": "p", "program": "true", **kwargs})


def test_bad_metrics_are_refused():
    with pytest.raises(ConfigError, match="aggregate 'median'"):
        Metric("m", "x", aggregate="median")
    with pytest.raises(ConfigError, match="above max"):
        Metric("m", "x", min=2, max=1)


def test_every_shipped_payload_names_its_debian_package():
    assert all(p.package for p in PAYLOADS.values())
    assert {p.package for p in PAYLOADS.values()} == {
        "stress-ng", "rt-tests", "linux-perf", "fio", "sysbench",
    }  # fmt: skip


def _plan(*steps, duration=10.0):
    return compile_plan(Scenario("p", "d", list(steps), duration), Topology.parse("1n1l4c1t"))


def test_ops_get_ids_and_arguments_scaled_to_the_cgroup_and_the_time_left():
    plan = _plan(
        Step(
            [Op.add_cgroup(CgroupDef("a", workers=1, payload=STRESS_NG))],
            HoldSpec(frac=0.5),
        ),
        Step(
            [Op.run_payload("a", HACKBENCH), Op.wait_payload("hackbench"),
             Op.kill_payload("stress-ng", "a")],
            HoldSpec(frac=0.5),
        ),
    )  # fmt: skip
    first, second = plan["steps"][0]["ops"], plan["steps"][1]["ops"]
    run = [o for o in first if o["op"] == "run_payload"][0]
    assert run["argv"][:5] == ["/ktstr/payload/bin/stress-ng", "--cpu", "4", "--timeout", "4s"]
    assert [o["op"] for o in second] == ["run_payload", "wait_payload", "kill_payload"]
    assert second[1]["ids"] == [1] and second[2]["ids"] == [0]
    assert [(e["id"], e["name"], e["cgroup"]) for e in plan["payloads"]] == [
        (0, "stress-ng", "a"),
        (1, "hackbench", "a"),
    ]
    assert plan["payloads"][0]["parser"]["output"] == "stress-ng"


def test_a_plan_without_payloads_is_unchanged():
    assert "payloads" not in _plan(Step([Op.add_cgroup(CgroupDef("a"))]))


@pytest.mark.parametrize(
    ("ops", "needle"),
    [
        ([Op.run_payload("a", HACKBENCH), Op.run_payload("a", HACKBENCH)], "runs twice"),
        ([Op.wait_payload("nothing")], "no payload named nothing"),
        ([Op.run_payload("a", HACKBENCH), Op.kill_payload("hackbench", "b")], "in cgroup b"),
        ([Op.run_payload("a", HACKBENCH.with_args("{bogus}"))], "unknown placeholder"),
        ([Op.run_payload("a", HACKBENCH, name=f"h{i}") for i in range(17)], "more than 16"),
    ],
)
def test_payload_ops_that_cannot_work_fail_before_boot(ops, needle):
    setup = [Op.add_cgroup(CgroupDef("a", workers=0)), Op.add_cgroup(CgroupDef("b", workers=0))]
    with pytest.raises(ConfigError, match=needle):
        _plan(Step(setup + ops))


def test_a_killed_payload_cannot_be_waited_for():
    setup = [Op.add_cgroup(CgroupDef("a", workers=0)), Op.run_payload("a", HACKBENCH)]
    with pytest.raises(ConfigError, match="none runs"):
        _plan(Step(setup + [Op.kill_payload("hackbench"), Op.wait_payload("hackbench")]))


def test_a_cgroup_with_children_cannot_run_a_payload():
    with pytest.raises(ConfigError, match="cannot run a payload itself"):
        CgroupDef("a", workers=0, payload=HACKBENCH, children=(CgroupDef("b"),))
    with pytest.raises(ConfigError, match="is not a Payload"):
        CgroupDef("a", payload="hackbench")


def test_a_missing_program_names_its_debian_package():
    entry = {"name": "hb", "program": "ktstr-no-such-program", "package": "rt-tests"}
    with pytest.raises(ConfigError, match="apt-get install rt-tests"):
        pack.find_program(entry)


def test_a_script_is_refused(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    with pytest.raises(ConfigError, match="not an ELF program"):
        pack.find_program({"name": "s", "program": str(script)})


def test_programs_are_packed_with_their_libraries_and_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    true = shutil.which("true")
    path, libs = pack.archive([{"name": "t", "program": true}])
    names = {e.path for e in cpio.read(path.read_bytes())}
    assert "ktstr/payload/bin/true" in names
    assert any("libc.so" in n for n in names) and libs
    built = path.stat().st_mtime_ns
    again, _ = pack.archive([{"name": "t", "program": true}])
    assert again == path and again.stat().st_mtime_ns == built
    assert pack.archive([]) == (None, "")


def test_the_cli_names_the_package_before_boot(tmp_path):
    user = tmp_path / "mine.py"
    user.write_text(
        "from ktstr import CgroupDef, Op, Payload, Scenario, Step\n"
        "P = Payload('gone', 'ktstr-no-such-program', package='some-package')\n"
        "s = Scenario('s', 'd', [Step([Op.add_cgroup(CgroupDef('a', payload=P))])])\n"
    )
    env_kernel = os.environ.pop("KTSTR_KERNEL", None)
    try:
        proc = ktstr("run", f"{user}::s")
    finally:
        if env_kernel is not None:
            os.environ["KTSTR_KERNEL"] = env_kernel
    assert_one_sentence(proc, "ktstr-no-such-program", "apt-get install some-package")


def test_doctor_names_the_package_of_a_missing_payload_program(monkeypatch):
    from ktstr import doctor

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n: None if n == "hackbench" else real(n))
    check = doctor.payload_check()
    assert not check.ok and not check.required
    assert check.fix.endswith("rt-tests") and "missing from rt-tests" in check.detail


def test_included_files_are_an_archive_cached_by_content(tmp_path, monkeypatch):
    from ktstr.initramfs import include

    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    conf = tmp_path / "bench.conf"
    conf.write_text("x=1\n")
    path = include.archive(include.pack([conf]))
    entries = {e.path: e.data for e in cpio.read(path.read_bytes())}
    assert entries["include-files/bench.conf"] == b"x=1\n"
    built = path.stat().st_mtime_ns
    assert include.archive(include.pack([conf])).stat().st_mtime_ns == built
    conf.write_text("x=2\n")
    assert include.archive(include.pack([conf])) != path
    assert include.archive({}) is None
