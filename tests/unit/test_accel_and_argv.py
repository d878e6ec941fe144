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
    from ktstr.vm import qemu

    topo = Topology.parse("1n1l1c1t")
    monkeypatch.setattr(
        qemu, "choose_qemu", lambda *a: qemu.QemuCommand(("qemu",), "10.0.2", "cache", "test")
    )
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


def test_sandbox_is_added_when_this_qemu_supports_it(monkeypatch):
    from ktstr.vm import qemu

    cfg = VmConfig("/k", "/i", Topology.parse("1n1l1c1t"), "tcg")
    monkeypatch.setattr(qemu, "sandbox_supported", lambda binary: True)
    argv = build_argv(cfg)
    assert argv[argv.index("-sandbox") + 1] == qemu.SANDBOX
    monkeypatch.setattr(qemu, "sandbox_supported", lambda binary: False)
    assert "-sandbox" not in build_argv(cfg)


def test_sandbox_probe_of_a_missing_or_broken_binary_says_no(tmp_path):
    from ktstr.vm import qemu

    assert qemu.sandbox_supported(str(tmp_path / "no-qemu")) is False
    fake = tmp_path / "qemu-without-seccomp"
    fake.write_text("#!/bin/sh\necho '-sandbox support is not enabled' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert qemu.sandbox_supported(str(fake)) is False


def test_kvm_probe_is_an_ordinary_vm_in_a_slot(monkeypatch, tmp_path):
    """The probe's argv comes from build_argv and run_vm owns the process, inside a slot."""
    import contextlib

    from ktstr.vm import lifecycle, slots

    seen = {}

    @contextlib.contextmanager
    def slot():
        seen["slot"] = True
        yield 0

    def run_vm(cfg, run_dir, timeout_s, *args, **kwargs):
        seen["argv"] = build_argv(cfg)
        assert seen["slot"] and timeout_s == accel._PROBE_TIMEOUT_S
        (run_dir / "console.log").write_text(f"Linux version x\n{accel._MARKER}\n")
        return lifecycle.VmResult(end=lifecycle.POWEROFF, exit_code=0, run_dir=run_dir)

    monkeypatch.setattr(slots, "vm_slot", slot)
    monkeypatch.setattr(lifecycle, "run_vm", run_vm)
    monkeypatch.setattr(
        accel, "busybox_archive", lambda init: type("A", (), {"write": lambda self, f: None})()
    )
    assert accel.boot_probe("/boot/vmlinuz") is None
    argv = seen["argv"]
    assert argv[argv.index("-accel") + 1] == "kvm" and argv[argv.index("-kernel") + 1] == (
        "/boot/vmlinuz"
    )

    def stuck(cfg, run_dir, timeout_s, *args, **kwargs):
        return lifecycle.VmResult(end=lifecycle.TIMEOUT, exit_code=None, run_dir=run_dir)

    monkeypatch.setattr(lifecycle, "run_vm", stuck)
    assert "did not reach init" in accel.boot_probe("/boot/vmlinuz")
