"""User-causable failures end in one sentence, exit 2, no traceback (no VM needed)."""

import json

import pytest

from tests.helpers import assert_one_sentence, ktstr


@pytest.mark.parametrize(
    "args, option",
    [
        (["run", "steady", "--duration", "-1"], "--duration"),
        (["run", "steady", "--duration", "0"], "--duration"),
        (["run", "steady", "--duration", "nan"], "--duration"),
        (["run", "steady", "--duration", "inf"], "--duration"),
        (["run", "steady", "--duration", "soon"], "--duration"),
        (["run", "steady", "--timeout", "-5"], "--timeout"),
        (["run", "steady", "--memory", "-512"], "--memory"),
        (["vm", "probe", "--timeout", "nan"], "--timeout"),
        (["vm", "probe", "--memory", "0"], "--memory"),
        (["gauntlet", "--duration", "-1"], "--duration"),
        (["gauntlet", "-j", "0"], "-j/--jobs"),
        (["gauntlet", "--jobs", "-2"], "-j/--jobs"),
        (["gauntlet", "--mem-budget", "-1"], "--mem-budget"),
        (["gauntlet", "--budget", "inf"], "--budget"),
        (["gauntlet", "--max-cpus", "0"], "--max-cpus"),
        (["compare", "--scheduler", "scx_simple", "steady", "--runs", "0"], "--runs"),
        (["compare", "--scheduler", "scx_simple", "steady", "--duration", "-3"], "--duration"),
    ],
)
def test_numbers_must_be_finite_and_positive(args, option):
    assert_one_sentence(ktstr(*args), option, "is not a finite", "give e.g.")


def test_a_corrupt_baseline_names_its_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(tmp_path))
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "main.json").write_text('{"runs": [')
    line = assert_one_sentence(ktstr("compare", "main", "scheduler=x"), "main.json")
    assert "ktstr baseline save main" in line
    (tmp_path / "baselines" / "main.json").write_text(json.dumps({"runs": "not a list"}))
    assert_one_sentence(ktstr("compare", "main", "scheduler=x"), "main.json", "delete")


def test_a_corrupt_scheduler_build_record_names_its_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    build = tmp_path / "schedulers" / "7.2" / "clang-22"
    build.mkdir(parents=True)
    (build / "meta.json").write_text("{")
    assert_one_sentence(ktstr("schedulers", "list"), str(build / "meta.json"), "--force")


def test_an_unwritable_cache_directory_is_one_sentence(monkeypatch):
    # /sys refuses new directories even to root, so this holds for any user
    monkeypatch.setenv("KTSTR_CACHE_DIR", "/sys/ktstr-cache")
    proc = ktstr("kernel", "fetch", "--mirror", "http://mirror.invalid/debian")
    assert_one_sentence(proc, "/sys/ktstr-cache", "KTSTR_CACHE_DIR")


def test_an_unwritable_runs_directory_is_one_sentence(monkeypatch):
    monkeypatch.setenv("KTSTR_RUNS_DIR", "/sys/ktstr-runs")
    assert_one_sentence(ktstr("results", "list"), "/sys/ktstr-runs", "KTSTR_RUNS_DIR")


def test_missing_apt_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    proc = ktstr("kernel", "fetch", "--mirror", "http://mirror.invalid/debian")
    assert_one_sentence(proc, "apt-get is not installed", "sudo apt-get install apt")


def test_an_empty_runs_directory_setting_means_the_default(monkeypatch):
    from ktstr import paths

    monkeypatch.setenv("KTSTR_RUNS_DIR", "")
    assert str(paths.runs_dir()) == "runs"  # not the working directory itself
