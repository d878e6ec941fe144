"""Which presets a gauntlet runs, and that every one it leaves out is named with why.

The CLI is run in-process with the VM runner replaced, so nothing boots.
"""

import pytest

from ktstr import gauntlet
from ktstr.cli import main
from ktstr.errors import ConfigError
from ktstr.presets import DEFAULT_MAX_CPUS, PRESETS, Constraints, preset, select
from ktstr.scheduler import EEVDF

ABOVE_CAP = [n for n in PRESETS if preset(n).cpus > DEFAULT_MAX_CPUS]


def test_the_cap_applies_to_the_default_selection_only():
    default = select(Constraints().reason, None)
    assert {v.preset for v in default.variants} == {
        n for n in PRESETS if preset(n).cpus <= DEFAULT_MAX_CPUS
    }
    assert default.capped == ABOVE_CAP and "numa4-smt" in ABOVE_CAP and not default.left_out
    named = select(Constraints().reason, None, ["numa4-smt", "tiny-1llc"])
    assert [v.preset for v in named.variants] == ["numa4-smt", "tiny-1llc"]
    assert named.capped == [] and named.left_out == []
    everything = select(Constraints().reason, ["a", "b"], all_presets=True)
    assert len(everything.variants) == 2 * len(PRESETS) and everything.capped == []


def test_a_preset_the_constraints_refuse_is_returned_with_its_reason():
    picked = select(Constraints(requires_smt=True).reason, None, ["tiny-1llc", "tiny-smt"])
    assert [v.preset for v in picked.variants] == ["tiny-smt"]
    assert picked.left_out == [("tiny-1llc", "topology 1n1l4c1t: the test needs SMT")]


def test_a_guest_larger_than_the_hosts_memory_is_left_out_before_boot():
    planned = gauntlet.prepare(
        ["steady"], EEVDF, ["max-cpu", "numa4-smt"], None, available_mib=2048
    )
    assert [v.preset for _, v in planned.cells] == ["numa4-smt"]
    (line,) = planned.left_out
    assert line == (
        "max-cpu: its 252 vCPUs need 4544 MiB of guest RAM and this host has 2048 MiB available"
    )
    with pytest.raises(ConfigError) as err:
        gauntlet.prepare(["steady"], EEVDF, ["max-cpu"], None, available_mib=2048)
    text = str(err.value)
    assert text.startswith("nothing left to run: max-cpu: its 252 vCPUs need 4544 MiB")
    assert text.endswith("or free memory.") and "\n" not in text


def test_a_scenario_a_preset_cannot_hold_is_left_out_once_per_preset():
    planned = gauntlet.prepare(
        ["steady_llc", "steady"], EEVDF, ["tiny-1llc", "tiny-2llc"], None, available_mib=10**6
    )
    assert [(s, v.id) for s, v in planned.cells] == [
        ("steady_llc", "tiny-2llc"),
        ("steady", "tiny-1llc"),
        ("steady", "tiny-2llc"),
    ]
    assert planned.left_out == [
        "steady_llc[tiny-1llc]: the scenario needs at least 2 LLCs, the topology has 1"
    ]


@pytest.fixture
def no_boot(monkeypatch):
    """The CLI with the runner replaced: records what it was asked to run."""
    asked = []

    def run(cells, *args, **kwargs):
        asked.extend(f"{s}[{v.id}]" for s, v in cells)
        return []

    monkeypatch.setattr(gauntlet, "run", run)
    monkeypatch.setattr(gauntlet, "mem_available_mib", lambda: 3000)
    return asked


def test_cli_runs_a_named_preset_above_the_cap(no_boot, capsys):
    assert main(["gauntlet", "steady", "--presets", "numa4-smt"]) == 0
    out = capsys.readouterr().out
    assert no_boot == ["steady[numa4-smt]"] and "gauntlet: 1 variants" in out
    assert "left out" not in out and "default selection" not in out


def test_cli_says_which_presets_the_default_cap_left_out(no_boot, capsys):
    assert main(["gauntlet", "steady"]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "default selection" in ln]
    assert line == (
        f"gauntlet: the default selection stops at 16 vCPUs and leaves out {', '.join(ABOVE_CAP)};"
        " name them with --presets, or use --all-presets"
    )
    assert len(no_boot) == len(PRESETS) - len(ABOVE_CAP)


def test_cli_all_presets_takes_every_preset_the_host_can_hold(no_boot, capsys):
    assert main(["gauntlet", "steady", "--all-presets"]) == 0
    out = capsys.readouterr().out
    assert "default selection" not in out
    assert "gauntlet: left out max-cpu: its 252 vCPUs need 4544 MiB" in out  # 3000 available
    assert len(no_boot) == len(PRESETS) - 1


def test_cli_with_nothing_left_exits_2_in_one_sentence(no_boot, capsys):
    assert main(["gauntlet", "steady_llc", "--presets", "tiny-1llc,tiny-smt"]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("gauntlet: left out steady_llc[") == 2
    (err,) = captured.err.strip().splitlines()
    assert err.startswith("ktstr: error: nothing left to run: steady_llc[tiny-1llc]: the scenario")
    assert no_boot == []


def test_a_preset_this_hosts_qemu_cannot_run_is_refused_before_any_vm(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from ktstr.errors import EnvironmentProblem
    from ktstr.initramfs import image
    from ktstr.kernel import store
    from ktstr.vm import accel, qemu

    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))  # no cached QEMU
    monkeypatch.delenv("KTSTR_QEMU", raising=False)
    monkeypatch.delenv("KTSTR_TCG_THREAD", raising=False)
    monkeypatch.setattr(store, "resolve", lambda kernel=None: SimpleNamespace(boot_path="/k"))
    monkeypatch.setattr(accel, "choose", lambda *a: accel.Accel("tcg", "test"))
    monkeypatch.setattr(qemu, "system_qemu", lambda reason="": qemu.QemuCommand(
        ("qemu",), "7.2.22", "system", reason
    ))  # fmt: skip
    qemu._choose.cache_clear()

    def no_image():
        raise AssertionError("the guest image was built for a run that had to be refused")

    monkeypatch.setattr(image, "base_image", no_image)
    names = ["tiny-1llc", "max-cpu"]
    cells = gauntlet.prepare(["steady"], EEVDF, names, None, available_mib=10**6).cells
    with pytest.raises(EnvironmentProblem, match="1n14l9c2t.*run 'ktstr qemu fetch'"):
        gauntlet.run(cells, EEVDF, 1, None, None, lambda *a: None)
    qemu._choose.cache_clear()
