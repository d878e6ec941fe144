"""Scenarios and schedulers from a user's Python file: ``ktstr run FILE.py::NAME`` and friends."""

from pathlib import Path

import pytest

from ktstr import userfile
from ktstr.errors import ConfigError
from ktstr.scenario.model import Scenario
from ktstr.scheduler import Scheduler
from tests.helpers import assert_one_sentence, ktstr

DATA = Path(__file__).resolve().parents[1] / "data"
USER = DATA / "user_scenarios.py"


def test_a_scenario_by_variable_name_and_by_its_own_name():
    assert userfile.scenario(f"{USER}::two_spinners").name == "two_spinners"
    by_var = userfile.load(f"{USER}::SIMPLE", Scheduler, "Scheduler")
    assert by_var[0] == "SIMPLE" and by_var[1].name == "scx_simple"
    by_own = userfile.load(f"{USER}::scx_simple", Scheduler, "Scheduler")
    assert by_own == by_var


def test_catalog_names_still_work():
    assert userfile.scenario("steady").name == "steady"
    assert userfile.scheduler("scx_simple").binary == "scx_simple"
    assert userfile.scheduler(None).is_eevdf


def test_a_declared_scheduler_keeps_its_flags():
    sched = userfile.scheduler(f"{USER}::SIMPLE")
    assert sorted(p.name for p in sched.profiles()) == [
        "default",
        "fifo",
        "fifo+verbose",
        "verbose",
    ]
    assert sched.profile("fifo,verbose").args == ("-f", "-v")


def test_a_missing_name_lists_what_the_file_declares():
    with pytest.raises(ConfigError) as err:
        userfile.scenario(f"{USER}::nope")
    assert "does not define nope" in str(err.value)
    assert "two_spinners, with_files" in str(err.value)


def test_the_wrong_type_names_what_it_is():
    with pytest.raises(ConfigError, match="SIMPLE in .* is a Scheduler, not a Scenario"):
        userfile.scenario(f"{USER}::SIMPLE")
    with pytest.raises(ConfigError, match="NOT_A_SCENARIO in .* is a int, not a Scheduler"):
        userfile.scheduler(f"{USER}::NOT_A_SCENARIO")
    with pytest.raises(ConfigError, match="declares the Scheduler SIMPLE:"):
        userfile.scheduler(f"{USER}::two_spinners")


def test_without_a_name_the_one_declared_object_is_taken(tmp_path):
    one = tmp_path / "one.py"
    one.write_text(
        "from ktstr import CgroupDef, Op, Scenario, Step\n"
        "only = Scenario('only', 'd', [Step([Op.add_cgroup(CgroupDef('a'))])])\n"
    )
    assert userfile.scenario(str(one)).name == "only"
    with pytest.raises(ConfigError, match="declares 2 Scenarios"):
        userfile.scenario(str(USER))


def test_a_file_with_nothing_of_the_kind(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="declare a Scenario at the top level"):
        userfile.scenario(f"{empty}::x")


def test_a_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        userfile.scenario("no/such/file.py::x")


def test_a_file_that_fails_to_import_shows_its_traceback_then_one_sentence(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    raise RuntimeError('boom in the user file')\n\nf()\n")
    proc = ktstr("run", f"{bad}::x")
    assert proc.returncode == 2
    head, _, last = proc.stderr.strip().rpartition("\n")
    assert head.startswith("Traceback (most recent call last):")
    assert f'File "{bad}", line 4' in head and "RuntimeError: boom in the user file" in head
    assert "importlib" not in head  # the user's frames only
    assert last.startswith("ktstr: error: importing") and "its traceback is above" in last


def test_a_syntax_error_shows_the_line(tmp_path):
    bad = tmp_path / "syntax.py"
    bad.write_text("x = (\n")
    proc = ktstr("scenarios", "--file", str(bad))
    assert proc.returncode == 2
    assert "SyntaxError" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ktstr: error: importing")


def test_a_file_is_imported_once(tmp_path):
    counted = tmp_path / "counted.py"
    counted.write_text(
        "import builtins\n"
        "builtins.KTSTR_IMPORTS = getattr(builtins, 'KTSTR_IMPORTS', 0) + 1\n"
        "from ktstr import CgroupDef, Op, Scenario, Step\n"
        "s = Scenario('s', 'd', [Step([Op.add_cgroup(CgroupDef('a'))])])\n"
    )
    import builtins

    userfile.scenario(f"{counted}::s")
    userfile.scenario(f"{counted}::s")
    assert builtins.KTSTR_IMPORTS == 1


def test_scenarios_file_lists_the_files_scenarios():
    proc = ktstr("scenarios", "--file", str(USER))
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["two_spinners", "with_files"]


def test_cli_refusals_before_boot():
    assert_one_sentence(ktstr("run", f"{USER}::nope"), "does not define nope", "two_spinners")
    assert_one_sentence(
        ktstr("run", "steady", "--scheduler", f"{USER}::SIMPLE", "--flags", "bogus"),
        "has no flag 'bogus'",
        "fifo, verbose",
    )
    assert_one_sentence(
        ktstr("gauntlet", f"{USER}::nope", "--presets", "tiny-1llc"), "does not define nope"
    )
    assert_one_sentence(
        ktstr("shell", "--exec", "true", "--test", f"{USER}::SIMPLE"),
        "is a Scheduler, not a Scenario or @ktstr_test",
    )


def test_a_ktstr_test_gives_a_shell_its_declaration(tmp_path):
    from ktstr.cli.vms import _declared_test

    decl = tmp_path / "decl.py"
    decl.write_text(
        "from ktstr import Scheduler, ktstr_test\n"
        "S = Scheduler('scx_simple', 'scx_simple')\n"
        "@ktstr_test(topology='1n1l2c1t', scheduler=S, include_files=['a.txt'])\n"
        "def my_test(ctx):\n"
        "    return ctx.run_defs([])\n"
    )
    got = _declared_test(f"{decl}::my_test")
    assert got["topology"] == "1n1l2c1t"
    assert got["scheduler"].name == "scx_simple"
    assert got["include_files"] == ("a.txt",)
    scenario = _declared_test(f"{USER}::with_files")
    assert scenario["include_files"] == (str(DATA / "user_include.txt"),)
    assert isinstance(userfile.scenario_or_test(f"{USER}::with_files"), Scenario)


def test_a_declaration_ktstr_refuses_at_import_is_its_sentence_at_the_files_line(tmp_path):
    bad = tmp_path / "refused.py"
    bad.write_text(
        "from ktstr import CgroupDef, Scenario, Step\n\n"
        "x = Scenario('x', 'x', [Step([])], duration_s=-1)\n"
    )
    proc = ktstr("run", f"{bad}::x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"ktstr: error: {bad}, line 3: "), line
