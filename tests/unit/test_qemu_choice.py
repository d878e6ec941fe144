"""Which QEMU a VM starts with (``KTSTR_QEMU``), and the argv of a guest past APIC ID 255.

The system QEMU and the cached one are small scripts that print a version, so
the policy is tested without any QEMU installed.
"""

import json
from pathlib import Path

import pytest

from ktstr.errors import ConfigError, EnvironmentProblem
from ktstr.topology import Topology
from ktstr.vm import qemu
from ktstr.vm.qemu import VmConfig, build_argv

SMALL = Topology.parse("2n4l2c2t")  # 16 vCPUs, APIC IDs up to 15
BIG = Topology.parse("1n14l9c2t")  # the max-cpu preset: 252 vCPUs, APIC IDs up to 433


def _script(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version} (fake)'\n")
    path.chmod(0o755)
    return path


def _cache_entry(cache: Path, version: str, name: str | None = None) -> Path:
    entry = cache / "qemu" / (name or f"{version}-0123456789abcdef")
    _script(entry / "usr/bin/qemu-system-x86_64", version)
    for d in ("usr/share/qemu", "usr/share/seabios"):
        (entry / d).mkdir(parents=True)
    (entry / "meta.json").write_text(json.dumps({"version": version}))
    return entry


def _forget() -> None:
    """Forget the choices and versions this process has made (a new process would)."""
    qemu._choose.cache_clear()
    qemu._version.cache_clear()


@pytest.fixture
def host(tmp_path, monkeypatch):
    """An empty cache and a PATH with no QEMU; ``system(version)`` installs a fake one."""
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.delenv("KTSTR_QEMU", raising=False)
    monkeypatch.delenv("KTSTR_TCG_THREAD", raising=False)
    monkeypatch.setattr(qemu, "sandbox_supported", lambda cmd: False)
    qemu._choose.cache_clear()
    qemu._version.cache_clear()

    class Host:
        cache = tmp_path / "cache"

        @staticmethod
        def system(version: str) -> Path:
            return _script(bindir / "qemu-system-x86_64", version)

        @staticmethod
        def cached(version: str, name: str | None = None) -> Path:
            return _cache_entry(tmp_path / "cache", version, name)

    yield Host
    qemu._choose.cache_clear()
    qemu._version.cache_clear()


def test_auto_prefers_the_system_qemu_for_an_ordinary_vm(host):
    system = host.system("7.2.22")
    host.cached("10.0.2")
    chosen = qemu.choose_qemu(SMALL, "single")
    assert chosen.prefix == (str(system),) and chosen.source == "system"
    assert chosen.version == "7.2.22" and chosen.env() is None
    assert qemu.qemu_version() == "7.2.22"


def test_auto_takes_the_newest_cached_qemu_for_what_only_it_can_do(host):
    host.system("7.2.22")
    host.cached("9.2.0")
    entry = host.cached("10.0.2")
    big = qemu.choose_qemu(BIG, "single")
    assert big.source == "cache" and big.version == "10.0.2"
    assert big.prefix == (
        str(entry / "usr/bin/qemu-system-x86_64"),
        "-L",
        str(entry / "usr/share/qemu"),
        "-L",
        str(entry / "usr/share/seabios"),
    )
    assert "1n14l9c2t" in big.reason and "433" in big.reason
    multi = qemu.choose_qemu(SMALL, "multi")
    assert multi.source == "cache" and "multi-threaded" in multi.reason
    # Under KVM the system QEMU has the kernel's x2APIC: no need for the cached one.
    assert qemu.choose_qemu(BIG, None).source == "system"
    assert qemu.qemu_version(BIG, "tcg") == "10.0.2"
    assert qemu.qemu_version(BIG, "kvm") == "7.2.22"


def test_a_system_qemu_that_can_do_everything_is_used_for_everything(host):
    system = host.system("10.1.0")
    host.cached("10.0.2")
    assert qemu.choose_qemu(BIG, "multi").prefix == (str(system),)


def test_a_needed_qemu_that_is_not_cached_is_refused_in_one_sentence(host):
    host.system("7.2.22")
    host.cached("9.2.0")  # older than any measured to work: not trusted
    with pytest.raises(EnvironmentProblem) as big:
        qemu.choose_qemu(BIG, "single")
    text = str(big.value)
    assert "1n14l9c2t" in text and "the system QEMU is 7.2.22" in text
    assert text.endswith("run 'ktstr qemu fetch'.") and text.count(".") <= 4
    with pytest.raises(EnvironmentProblem, match="multi-threaded TCG.*unset KTSTR_TCG_THREAD"):
        qemu.choose_qemu(SMALL, "multi")
    assert qemu.choose_qemu(SMALL, "single").version == "7.2.22"


def test_no_system_qemu_falls_back_to_the_cache_or_names_both_fixes(host):
    with pytest.raises(EnvironmentProblem, match="apt-get install qemu-system-x86.*qemu fetch"):
        qemu.choose_qemu(SMALL, "single")
    qemu._choose.cache_clear()
    host.cached("10.0.2")
    chosen = qemu.choose_qemu(SMALL, "single")
    assert chosen.source == "cache" and "not installed" in chosen.reason


def test_system_and_path_requests_are_obeyed_or_refused(host, monkeypatch, caplog):
    system = host.system("7.2.22")
    entry = host.cached("10.0.2")
    monkeypatch.setenv("KTSTR_QEMU", "system")
    assert qemu.choose_qemu(SMALL, "single").prefix == (str(system),)
    with pytest.raises(EnvironmentProblem, match="cannot run topology 1n14l9c2t.*qemu fetch"):
        qemu.choose_qemu(BIG, "single")
    assert qemu.choose_qemu(SMALL, "multi").source == "system"  # asked for: a warning only
    assert "may oops the guest" in caplog.text
    # A path to a cached binary still gets its firmware directories.
    monkeypatch.setenv("KTSTR_QEMU", str(entry / "usr/bin/qemu-system-x86_64"))
    chosen = qemu.choose_qemu(BIG, "single")
    assert chosen.source == "cache" and chosen.prefix[1] == "-L"
    other = host.system("10.0.0").rename(host.cache.parent / "my-qemu")
    monkeypatch.setenv("KTSTR_QEMU", str(other))
    chosen = qemu.choose_qemu(BIG, "single")
    assert (chosen.source, chosen.version, chosen.prefix) == ("path", "10.0.0", (str(other),))
    monkeypatch.setenv("KTSTR_QEMU", str(host.cache / "nope"))
    with pytest.raises(ConfigError, match="KTSTR_QEMU=.*neither auto, system nor"):
        qemu.choose_qemu(SMALL, "single")


def test_the_choice_is_made_once_per_need(host):
    host.system("7.2.22")
    calls = []
    real = qemu.qemu_fetch.newest_cached

    def counting(root=None):
        calls.append(root)
        return real(root)

    host.cached("10.0.2")
    qemu.qemu_fetch.newest_cached, saved = counting, real
    try:
        for _ in range(3):
            qemu.choose_qemu(BIG, "single")
            qemu.choose_qemu(Topology.parse("1n15l4c2t"), "single")  # 120 vCPUs: small IDs
    finally:
        qemu.qemu_fetch.newest_cached = saved
    assert len(calls) == 1


def test_argv_of_a_guest_past_apic_id_255(host):
    host.system("7.2.22")
    entry = host.cached("10.0.2")
    argv = build_argv(VmConfig("/k", "/i", BIG, "tcg", channel_fd=7))
    assert argv[0] == str(entry / "usr/bin/qemu-system-x86_64")
    assert argv[argv.index("-M") + 1] == "q35"
    assert argv[argv.index("-device") + 1] == "intel-iommu,intremap=on,eim=on"
    assert "252,sockets=14,cores=9,threads=2" in argv
    kvm = build_argv(VmConfig("/k", "/i", BIG, "kvm"))
    assert kvm[0] == host.system("7.2.22").as_posix()
    assert kvm[kvm.index("-M") + 1] == "q35,kernel-irqchip=split"
    small = build_argv(VmConfig("/k", "/i", Topology.parse("1n15l4c2t"), "tcg"))
    assert small[small.index("-M") + 1] == "pc" and "intel-iommu" not in " ".join(small)
    assert qemu.max_apic_id(Topology.parse("1n15l4c2t")) == 119
    assert qemu.max_apic_id(BIG) == 433


def test_run_vm_starts_the_cached_qemu_with_its_environment(host, monkeypatch, tmp_path):
    """The environment of the chosen QEMU reaches the process (a private lib dir here)."""
    from ktstr.vm import lifecycle

    host.system("7.2.22")
    entry = host.cached("10.0.2")
    (entry / "lib").mkdir()
    seen = {}

    class Proc:
        def __init__(self, argv, **kwargs):
            seen.update(kwargs, argv=argv)
            raise OSError("stop here")

    monkeypatch.setattr(lifecycle.subprocess, "Popen", Proc)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(OSError, match="stop here"):
        lifecycle.run_vm(VmConfig("/k", "/i", BIG, "tcg"), run_dir, 5)
    assert seen["env"]["LD_LIBRARY_PATH"].startswith(str(entry / "lib"))
    assert str(entry / "usr/bin/qemu-system-x86_64") in seen["argv"]


def test_doctor_names_both_qemus_and_why(host, monkeypatch):
    from ktstr import doctor

    host.system("7.2.22")
    rows = {c.name: c for c in doctor.qemu_checks()}
    assert rows["qemu"].ok and "QEMU 7.2.22" in rows["qemu"].detail
    assert "ordinary VMs" in rows["qemu"].detail
    big = rows["qemu 10"]
    assert not big.ok and not big.required and big.fix == "run 'ktstr qemu fetch'"
    assert "none cached" in big.detail and "multi-threaded TCG" in big.detail
    _forget()
    host.cached("10.0.2")
    big = {c.name: c for c in doctor.qemu_checks()}["qemu 10"]
    assert big.ok and "QEMU 10.0.2" in big.detail and "ktstr qemu fetch" in big.detail
    _forget()
    host.system("10.0.2")
    big = {c.name: c for c in doctor.qemu_checks()}["qemu 10"]
    assert big.ok and big.detail.startswith("not needed")
    monkeypatch.setenv("KTSTR_QEMU", "system")
    _forget()
    host.system("7.2.22")
    big = {c.name: c for c in doctor.qemu_checks()}["qemu 10"]
    assert not big.ok and "cannot run topology 1n14l9c2t" in big.detail
