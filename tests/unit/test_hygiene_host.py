"""Host-side hygiene: caches, missing tools, the unpack pipeline, .deb reuse, libraries."""

import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from ktstr import budget, paths, testscheds
from ktstr.errors import EnvironmentProblem, KernelError, KtstrError
from ktstr.kernel import debian, store
from ktstr.vm import accel


def one_sentence(err: KtstrError, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text and text.endswith(".")
    for needle in needles:
        assert needle in text


def test_a_corrupt_accelerator_cache_is_ignored_and_probed_again(tmp_path, caplog):
    cache = tmp_path / "accel.json"
    cache.write_text('{"name": "kvm"')
    with caplog.at_level(logging.INFO):
        assert accel._cached(cache) is None
    assert "probing KVM again" in caplog.text
    cache.write_text(json.dumps({"name": "warp", "reason": "x"}))
    assert accel._cached(cache) is None
    cache.write_text(json.dumps({"name": "tcg", "reason": "r"}))
    assert accel._cached(cache) == accel.Accel("tcg", "r")


def test_the_cost_cache_skips_bad_lines_and_keeps_good_ones(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    for cpus, wall in ((2, 10.0), (4, 11.0), (8, 13.0), (16, 17.0)):
        budget.record_cost(cpus, 2.0, wall)
    with open(tmp_path / "costs.jsonl", "a") as f:
        f.write('{"cpus": 4, "wall_s": NaN, "duration_s": 1}\n{"cpus": "x"}\n{"cpus": 4, "wal')
    with caplog.at_level(logging.INFO):
        model = budget.calibrated()
    assert model.samples == 4 and model.per_cpu_s == pytest.approx(0.5)
    assert "skipped 2 unreadable lines" in caplog.text


def test_a_corrupt_kernel_record_names_its_file(tmp_path):
    (tmp_path / "meta.json").write_text("[1, 2")
    with pytest.raises(KernelError) as err:
        store.meta(tmp_path)
    one_sentence(err.value, str(tmp_path / "meta.json"), "ktstr kernel fetch --force")


def test_missing_tools_name_their_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as err:
        debian.unpack(tmp_path / "x.deb", tmp_path / "tree")
    one_sentence(err.value, "dpkg-deb is not installed", "sudo apt-get install dpkg")
    kernel = SimpleNamespace(boot_path="/k", release="r")
    with pytest.raises(EnvironmentProblem) as err:
        testscheds.build(kernel, ["22"])
    one_sentence(err.value, "clang-22 is not installed", "apt-get install clang-22 lld-22")
    for tool in ("clang-22", "ld.lld-22"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    with pytest.raises(EnvironmentProblem) as err:
        testscheds.build(kernel, ["22"])
    one_sentence(err.value, "make is not installed", "sudo apt-get install make")
    with pytest.raises(KtstrError, match="not a clang major version"):
        testscheds.build(kernel, ["latest"])
    with pytest.raises(EnvironmentProblem, match="apt-get install xz-utils"):
        paths.host_tool("xz", "unpacking")


def test_the_pipeline_connects_argvs_and_checks_every_stage(tmp_path):
    out = tmp_path / "out"
    testscheds.pipeline(["printf", "a b c"], ["tr", " ", "-"], ["tee", str(out)], what="w", fix="f")
    assert out.read_text() == "a-b-c"
    with pytest.raises(EnvironmentProblem) as err:  # the first stage fails, the last succeeds
        testscheds.pipeline(
            ["sh", "-c", "echo broken >&2; exit 3"], ["cat"], what="unpack", fix="f"
        )
    one_sentence(err.value, "unpack failed in sh: broken", "f")
    with pytest.raises(EnvironmentProblem, match="failed in cat"):
        testscheds.pipeline(["printf", "x"], ["cat", str(tmp_path / "absent")], what="u", fix="f")


class FakeApt(debian.PrivateApt):
    """A PrivateApt whose index and apt-get are faked: one package, a known SHA256."""

    def __init__(self, root: Path, content: bytes) -> None:
        self.content, self.downloads = content, 0
        self.fields = {
            "Package": "linux-source-7.2",
            "Version": "7.2.13-1",
            "Architecture": "all",
            "SHA256": hashlib.sha256(content).hexdigest(),
        }

    def show(self, package: str) -> dict[str, str]:
        assert package in ("linux-source-7.2", "linux-source-7.2=7.2.13-1")
        return dict(self.fields)

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        assert (tool, args[-1]) == ("apt-get", "linux-source-7.2=7.2.13-1")
        self.downloads += 1
        (cwd / "linux-source-7.2_7.2.13-1_all.deb").write_bytes(self.content)
        return ""


def test_a_cached_deb_is_used_only_when_it_matches_the_index(tmp_path):
    apt = FakeApt(tmp_path, b"the real package")
    stray = tmp_path / "linux-source-7.2_7.2.12-1_all.deb"  # another version: never globbed
    stray.write_bytes(b"old")
    path = apt.download("linux-source-7.2", tmp_path, "7.2.13-1")
    assert path.name == "linux-source-7.2_7.2.13-1_all.deb" and apt.downloads == 1
    assert apt.download("linux-source-7.2", tmp_path, "7.2.13-1") == path
    assert apt.downloads == 1  # verified against the index and reused
    path.write_bytes(b"tampered")
    assert apt.download("linux-source-7.2", tmp_path).read_bytes() == b"the real package"
    assert apt.downloads == 2 and stray.read_bytes() == b"old"


def test_a_missing_shared_library_is_one_sentence(tmp_path, monkeypatch):
    from ktstr.initramfs import elfdeps
    from ktstr.runner import pack_scheduler
    from ktstr.scheduler import Scheduler

    binary = tmp_path / "scx_fake"
    binary.write_bytes(b"\x7fELF")
    info = elfdeps.ElfInfo(needed=["libnot-here.so.3"])
    monkeypatch.setattr(elfdeps, "read_elf", lambda path: info)
    with pytest.raises(EnvironmentProblem) as err:
        pack_scheduler(Scheduler("scx_fake", binary=str(binary)), (), "r")
    one_sentence(err.value, "libnot-here.so.3", str(binary), "LD_LIBRARY_PATH")
