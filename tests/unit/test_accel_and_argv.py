import pytest

from ktstr import wire
from ktstr.errors import ConfigError
from ktstr.topology import Topology
from ktstr.vm import accel
from ktstr.vm.qemu import VmConfig, build_argv


def test_requested_validates(monkeypatch):
    monkeypatch.delenv("KTSTR_ACCEL", raising=False)
    assert accel.requested(None) == "auto"
    monkeypatch.setenv("KTSTR_ACCEL", "TCG")
    assert accel.requested(None) == "tcg"
    assert accel.requested("kvm") == "kvm"
    with pytest.raises(ConfigError, match="auto\\|kvm\\|tcg"):
        accel.requested("hvf")


def test_kvm_pvm_host_is_refused(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    mods = tmp_path / "module"
    (mods / "kvm").mkdir(parents=True)
    (mods / "kvm_pvm").mkdir()
    assert "kvm_pvm" in accel.host_kvm_problem(mods, str(dev))
    (mods / "kvm_intel").mkdir()
    assert accel.host_kvm_problem(mods, str(dev)) is None
    assert "does not exist" in accel.host_kvm_problem(mods, str(tmp_path / "absent"))


def test_tcg_requested_skips_probing():
    assert accel.choose("tcg") == accel.Accel("tcg", "requested")


def test_tcg_thread_mode_override(monkeypatch):
    topo = Topology.parse("1n1l1c1t")
    monkeypatch.setenv("KTSTR_TCG_THREAD", "multi")
    assert "tcg,thread=multi" in build_argv(VmConfig("/k", "/i", topo, "tcg"))
    monkeypatch.setenv("KTSTR_TCG_THREAD", "bogus")
    with pytest.raises(ConfigError, match="KTSTR_TCG_THREAD"):
        build_argv(VmConfig("/k", "/i", topo, "tcg"))


def test_argv_is_a_list_with_topology_channel_and_panic_device(monkeypatch):
    monkeypatch.delenv("KTSTR_TCG_THREAD", raising=False)
    cfg = VmConfig("/k", "/i", Topology.parse("1n2l2c2t"), "tcg", channel_fd=7)
    argv = build_argv(cfg)
    assert argv[argv.index("-kernel") + 1] == "/k"
    assert "tcg,thread=single" in argv and "max,+topoext" in argv
    assert "8,sockets=2,cores=2,threads=2" in argv
    assert "socket,id=ktstr0,fd=7" in argv
    assert any(wire.PORT_NAME in a for a in argv)
    assert "panic=exit-failure" in argv
    assert "panic=-1" in argv[argv.index("-append") + 1]


def test_kvm_argv_uses_host_cpu():
    argv = build_argv(VmConfig("/k", "/i", Topology.parse("1n1l1c1t"), "kvm"))
    assert argv[argv.index("-cpu") + 1] == "host"
