"""Host files into the guest: ``include_files``, ``--include`` and a scheduler's config file."""

import os
from pathlib import Path

import pytest

from ktstr import CgroupDef, Op, Scenario, Scheduler, Step
from ktstr.errors import ConfigError
from ktstr.initramfs import cpio
from ktstr.initramfs.image import run_archive
from ktstr.initramfs.include import check, guest_path, pack
from tests.helpers import assert_one_sentence, ktstr

USER = Path(__file__).resolve().parents[1] / "data" / "user_scenarios.py"


def test_a_file_and_a_directory_land_under_include_files(tmp_path):
    conf = tmp_path / "sched.json"
    conf.write_text("{}")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "sub" / "deep.bin").write_bytes(b"\0\1")
    (tree / "link.txt").symlink_to(tree / "top.txt")
    (tree / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(tree / "fifo")
    files = pack([conf, tree])
    assert files == {
        "/include-files/sched.json": b"{}",
        "/include-files/tree/top.txt": b"top",
        "/include-files/tree/link.txt": b"top",
        "/include-files/tree/sub/deep.bin": b"\0\1",
    }
    archive = {e.path: e.data for e in cpio.read(run_archive({"mode": "probe"}, files))}
    assert archive["include-files/tree/sub/deep.bin"] == b"\0\1"
    assert "include-files/tree" in archive  # parents are made as directories


def test_nothing_to_include_reads_nothing():
    assert pack([]) == {}


def test_a_missing_path_is_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match=r"include path .*nope does not exist"):
        pack([tmp_path / "nope"])


def test_two_paths_with_one_guest_name_are_refused(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "same.txt").write_text(d)
    with pytest.raises(ConfigError, match="would both be /include-files/same.txt"):
        check([tmp_path / "a" / "same.txt", tmp_path / "b" / "same.txt"])
    # The same host file named twice is one file, not a clash.
    assert len(check([tmp_path / "a" / "same.txt", tmp_path / "a" / "same.txt"])) == 1


def test_a_scheduler_config_file_is_packed_and_passed_by_its_option(tmp_path):
    conf = tmp_path / "layered.json"
    conf.write_text("{}")
    spaced = Scheduler("scx_x", "scx_x", config_file=str(conf), config_arg="--config")
    assert spaced.config_args() == ("--config", "/include-files/layered.json")
    assert spaced.config_files() == (str(conf),)
    joined = Scheduler("scx_x", "scx_x", config_file=str(conf), config_arg="--config=")
    assert joined.config_args() == ("--config=/include-files/layered.json",)
    assert Scheduler("scx_x", "scx_x").config_args() == ()
    assert guest_path(conf) == "/include-files/layered.json"


def test_a_config_file_without_its_option_is_refused():
    with pytest.raises(ConfigError, match="config_file but no config_arg"):
        Scheduler("scx_x", "scx_x", config_file="x.json")


def test_include_files_must_be_a_list():
    step = [Step([Op.add_cgroup(CgroupDef("a"))])]
    with pytest.raises(ConfigError, match="include_files is one string"):
        Scenario("s", "d", step, include_files="conf.json")
    assert Scenario("s", "d", step, include_files=[Path("x")]).include_files == ("x",)


def test_cli_refuses_missing_and_clashing_includes_before_boot(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(runs))
    missing = str(tmp_path / "missing")
    assert_one_sentence(ktstr("run", "steady", "--include", missing), "does not exist")
    assert_one_sentence(ktstr("shell", "--exec", "true", "--include", missing), "does not exist")
    assert_one_sentence(
        ktstr("gauntlet", "steady", "--presets", "tiny-1llc", "--include", missing),
        "does not exist",
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "user_include.txt").write_text("x")
    clash = ktstr(
        "run", f"{USER}::with_files", "--include", str(other / "user_include.txt")
    )  # the scenario includes a file of that name already
    assert_one_sentence(clash, "would both be /include-files/user_include.txt")
    assert not runs.exists()  # refused before a run directory was made
