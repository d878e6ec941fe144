"""The fixture scheduler's Python side: knob arguments, the build's staleness rule, and
that the loader, this module and the docs name the same knobs."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from ktstr import fixture_sched
from ktstr.errors import ConfigError
from ktstr.fixture_sched import KNOBS, NAME, SCX_KTSTR, SOURCES, knob_args

DOCS = Path(__file__).parent.parent.parent / "docs" / "schedulers.md"


def test_knob_args_render_flags():
    assert knob_args(pile=0, idle_waste=True, error_after_s=1.5, stall_after_s=None) == (
        "--pile=0",
        "--idle-waste",
        "--error-after-s=1.5",
    )
    assert knob_args(starve_cgroup="ktstr/cg_0,2500") == ("--starve-cgroup=ktstr/cg_0,2500",)
    assert knob_args(pile_cgroup="ktstr/hot") == ("--pile-cgroup=ktstr/hot",)
    assert knob_args(pile_cgroup="ktstr/hot,2") == ("--pile-cgroup=ktstr/hot,2",)
    assert knob_args(idle_waste=False) == ()


def test_an_unknown_knob_is_refused():
    with pytest.raises(ConfigError, match="no knob 'piles'"):
        knob_args(piles=1)


def test_watchdog_timeout_reaches_the_loader():
    sched = dataclasses.replace(SCX_KTSTR, watchdog_timeout_s=2)
    assert sched.profile(None).args == ("--timeout-ms", "2000")
    assert SCX_KTSTR.profile(None).args == ()


def test_loader_python_and_docs_name_the_same_knobs():
    loader = (SOURCES / f"{NAME}.c").read_text()
    names = re.findall(r'^\t\[K_\w+\] = "(\w+)",$', loader, re.MULTILINE)
    flags = re.findall(r'\{ "([a-z-]+)", \w+_argument, NULL, \'[PGISUOWKTE]\' \}', loader)
    assert names == list(KNOBS)
    assert [f"--{f}" for f in flags] == list(KNOBS.values())
    # the unknown-knob message lists them all, in order, and the usage text has a line each
    known = re.search(r"\(known: ([^)]*)\)", re.sub(r'"\s+"', "", loader)).group(1)
    assert known.split(", ") == list(KNOBS)
    usage = loader[loader.index("static const char usage[]") : loader.index("enum knob_id")]
    for name, flag in KNOBS.items():
        assert re.search(rf"^\"  {flag}[=\[ ].*  {name}=", usage, re.MULTILINE), name
    docs = DOCS.read_text()
    section = docs[docs.index("## The fixture scheduler scx_ktstr") :]
    for name, flag in KNOBS.items():
        assert f"`{name}=" in section and f"`{flag}" in section, name


def test_sources_ship_inside_the_package():
    for name in fixture_sched.FILES:
        assert (SOURCES / name).is_file()
    bpf = (SOURCES / f"{NAME}.bpf.c").read_text()
    assert "#include <scx/common.bpf.h>" in bpf and 'SEC("license") = "GPL"' in bpf


def _no_tree():
    raise AssertionError("the source tree was needed")


def test_a_current_build_is_kept_and_a_stale_one_rebuilt(tmp_path, monkeypatch):
    bin_dir = tmp_path / "clang-22" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / NAME).write_text("binary")
    stamp = bin_dir.parent / fixture_sched.STAMP
    stamp.write_text(json.dumps({"sources": fixture_sched.sources_hash()}))
    assert fixture_sched.build([bin_dir], _no_tree, Path("/vmlinux")) == []

    calls = []
    monkeypatch.setattr(
        fixture_sched,
        "build_one",
        lambda sched_dir, comp, vmlinux, out: calls.append((sched_dir, comp, out)) or out / NAME,
    )
    stamp.write_text(json.dumps({"sources": "older"}))
    tree = tmp_path / "linux-source"
    assert fixture_sched.build([bin_dir], lambda: tree, Path("/vmlinux")) == [bin_dir / NAME]
    assert calls == [(tree / "tools" / "sched_ext", "22", bin_dir)]
    calls.clear()
    stamp.write_text(json.dumps({"sources": fixture_sched.sources_hash()}))
    fixture_sched.build([bin_dir], lambda: tree, Path("/vmlinux"), force=True)
    assert len(calls) == 1
