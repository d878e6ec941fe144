"""The cached-QEMU fetcher: version and content keys, entry selection, and a fetch
through a faked apt index whose packages are real (tiny) .deb files."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ktstr.errors import EnvironmentProblem, FetchError
from ktstr.kernel import debian
from ktstr.vm import qemu_fetch

BPO = "1:10.0.2+ds-2+deb13u1~bpo12+1"
DEPENDS = (
    "libaio1 (>= 0.3.93), libc6 (>= 2.34), libfdt1 (>= 1.6.1), "
    f"qemu-system-common (= {BPO}), qemu-system-data (>> 1:10.0.2+ds~), "
    "seabios (>> 1.16.3-1~), ipxe-qemu"
)


def test_upstream_version_drops_epoch_and_debian_revision():
    assert qemu_fetch.upstream_version(BPO) == "10.0.2"
    assert qemu_fetch.upstream_version("1:7.2+dfsg-7+deb12u18+b3") == "7.2"
    assert qemu_fetch.upstream_version("9.1.0-1") == "9.1.0"
    with pytest.raises(FetchError, match="cannot read a QEMU version"):
        qemu_fetch.upstream_version("1:abc")


def test_version_key_orders_numerically():
    versions = ["9.2.0", "10.0.2", "10.0.10", "7.2"]
    assert max(versions, key=qemu_fetch.version_key) == "10.0.10"


def test_content_key_is_order_independent_and_changes_with_any_hash():
    a = {"qemu-system-x86": "aa", "seabios": "bb"}
    b = {"seabios": "bb", "qemu-system-x86": "aa"}
    assert qemu_fetch.content_key(a) == qemu_fetch.content_key(b)
    assert qemu_fetch.content_key(a) != qemu_fetch.content_key({**a, "seabios": "bc"})
    expected = hashlib.sha256(b"qemu-system-x86 aa\nseabios bb\n").hexdigest()
    assert qemu_fetch.content_key(a) == expected
    assert qemu_fetch.entry_name(BPO, a) == f"10.0.2-{expected[:16]}"


def test_companions_must_be_named_by_the_binary_package():
    fields = {p: {"Version": "1"} for p in qemu_fetch.PACKAGES}
    qemu_fetch.check_companions({"Version": BPO, "Depends": DEPENDS}, fields)
    without_seabios = DEPENDS.replace("seabios (>> 1.16.3-1~), ", "")
    with pytest.raises(FetchError, match="does not depend on seabios"):
        qemu_fetch.check_companions({"Version": BPO, "Depends": without_seabios}, fields)
    del fields["qemu-system-data"]
    with pytest.raises(FetchError, match="qemu-system-data is not in the suite"):
        qemu_fetch.check_companions({"Version": BPO, "Depends": DEPENDS}, fields)


def test_max_apic_id_follows_qemus_bit_fields():
    assert qemu_fetch.max_apic_id(1, 1, 1) == 0
    assert qemu_fetch.max_apic_id(4, 2, 1) == 7  # 2n4l2c1t: dense
    assert qemu_fetch.max_apic_id(14, 9, 2) == 433  # 1n14l9c2t: 9 cores take 4 bits
    assert qemu_fetch.max_apic_id(8, 16, 2) == 255  # the largest layout under 256 IDs
    assert qemu_fetch.max_apic_id(3, 65, 1) == 320


def test_parse_version_output():
    out = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright\n"
    assert qemu_fetch.parse_version_output(out) == "10.0.2"
    assert qemu_fetch.parse_version_output("garbage") is None


def test_missing_depends_leaves_out_what_is_fetched_and_what_is_installed():
    installed = {"libc6", "libaio1"}
    assert qemu_fetch.missing_depends(DEPENDS, installed) == ["libfdt1", "ipxe-qemu"]


def make_entry(root: Path, name: str, version: str, complete: bool = True) -> Path:
    entry = root / name
    for d in qemu_fetch.FIRMWARE_DIRS:
        (entry / d).mkdir(parents=True)
    binary = entry / qemu_fetch.BINARY
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    if complete:
        (entry / qemu_fetch.META).write_text(json.dumps({"version": version}))
    return entry


def test_newest_cached_picks_the_highest_complete_version(tmp_path):
    assert qemu_fetch.newest_cached(tmp_path / "absent") is None
    make_entry(tmp_path, "9.2.0-aaaa", "9.2.0")
    newest = make_entry(tmp_path, "10.0.2-bbbb", "10.0.2")
    make_entry(tmp_path, "10.1.0-cccc", "10.1.0", complete=False)  # interrupted: no meta.json
    make_entry(tmp_path, ".fetch-10.2.0-dddd-1", "10.2.0")  # a fetch in progress
    (tmp_path / "10.3.0-eeee").mkdir()
    (tmp_path / "10.3.0-eeee" / qemu_fetch.META).write_text("{broken")
    found = qemu_fetch.newest_cached(tmp_path)
    assert found == qemu_fetch.CachedQemu(newest, "10.0.2")


def test_an_entry_without_firmware_is_not_complete(tmp_path):
    entry = make_entry(tmp_path, "10.0.2-aaaa", "10.0.2")
    shutil.rmtree(entry / "usr/share/seabios")
    assert qemu_fetch.read_entry(entry) is None


def test_argv_prefix_names_both_firmware_dirs_and_env_adds_private_libs(tmp_path):
    entry = make_entry(tmp_path, "10.0.2-aaaa", "10.0.2")
    cached = qemu_fetch.read_entry(entry)
    assert cached.argv_prefix() == [
        str(entry / "usr/bin/qemu-system-x86_64"),
        "-L",
        str(entry / "usr/share/qemu"),
        "-L",
        str(entry / "usr/share/seabios"),
    ]
    assert "LD_LIBRARY_PATH" not in cached.env({"PATH": "/bin"})
    (entry / "lib").mkdir()
    env = cached.env({"LD_LIBRARY_PATH": "/opt/x"})
    assert env["LD_LIBRARY_PATH"] == f"{entry / 'lib'}:/opt/x"


# A fetch end to end, with the index and apt-get faked but real .deb files.

FAKE_QEMU = "#!/bin/sh\necho 'QEMU emulator version 10.0.2 (Debian test)'\n"


def build_deb(tmp: Path, package: str, version: str, files: dict[str, str]) -> bytes:
    root = tmp / f"build-{package}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: test\n"
    )
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    out = tmp / f"{package}.deb"
    subprocess.run(["dpkg-deb", "-b", str(root), str(out)], check=True, capture_output=True)
    return out.read_bytes()


class FakeApt(debian.PrivateApt):
    """Serves prepared .deb contents with the index's SHA256; counts downloads."""

    debs: dict[str, tuple[str, bytes]] = {}
    downloads = 0

    def __init__(self, mirror: str, suite: str, root: Path) -> None:
        self.mirror, self.suite, self.root = mirror, suite, root

    def update(self) -> None:
        pass

    def show(self, package: str) -> dict[str, str]:
        name = package.partition("=")[0]
        version, content = self.debs[name]
        fields = {
            "Package": name,
            "Version": version,
            "Architecture": "all",
            "SHA256": hashlib.sha256(content).hexdigest(),
        }
        if name == qemu_fetch.BINARY_PACKAGE:
            fields["Depends"] = DEPENDS
        return fields

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        name, _, version = args[-1].partition("=")
        FakeApt.downloads += 1
        _, content = self.debs[name]
        fields = {"Package": name, "Version": version, "Architecture": "all"}
        (cwd / debian.deb_name(fields)).write_bytes(content)
        return ""


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed")
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(debian, "PrivateApt", FakeApt)
    FakeApt.downloads = 0
    FakeApt.debs = {
        "qemu-system-x86": (
            BPO,
            build_deb(
                tmp_path,
                "qemu-system-x86",
                "10.0.2",
                {qemu_fetch.BINARY: FAKE_QEMU, "usr/share/man/man1/q.1": "man"},
            ),
        ),
        "qemu-system-data": (
            BPO,
            build_deb(tmp_path, "qemu-system-data", "10.0.2", {"usr/share/qemu/pvh.bin": "p"}),
        ),
        "seabios": (
            "1.16.3-2~bpo12+1",
            build_deb(tmp_path, "seabios", "1.16.3", {"usr/share/seabios/bios-256k.bin": "b"}),
        ),
    }
    return tmp_path


def test_fetch_unpacks_keeps_only_what_runs_and_reuses_the_entry(fake_suite):
    fetched = qemu_fetch.fetch(mirror="http://mirror.invalid/debian")
    assert not fetched.cached and fetched.qemu.version == "10.0.2"
    entry = fetched.qemu.root
    assert entry.parent == fake_suite / "cache" / "qemu"
    assert (entry / "usr/share/qemu/pvh.bin").read_text() == "p"
    assert (entry / "usr/share/seabios/bios-256k.bin").read_text() == "b"
    assert not (entry / "usr/share/man").exists()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["content_key"].startswith(entry.name.removeprefix("10.0.2-"))
    assert set(meta["sha256"]) == set(qemu_fetch.PACKAGES)
    assert FakeApt.downloads == 3
    again = qemu_fetch.fetch(mirror="http://mirror.invalid/debian")
    assert again.cached and again.qemu == fetched.qemu and FakeApt.downloads == 3
    assert qemu_fetch.newest_cached() == fetched.qemu
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".fetch-")]


def test_a_rebuilt_package_lands_in_a_new_entry(fake_suite):
    first = qemu_fetch.fetch(mirror="http://mirror.invalid/debian").qemu
    FakeApt.debs["seabios"] = (
        "1.16.3-2~bpo12+1",
        build_deb(fake_suite, "seabios", "1.16.3", {"usr/share/seabios/bios-256k.bin": "B"}),
    )
    second = qemu_fetch.fetch(mirror="http://mirror.invalid/debian").qemu
    assert second.root != first.root and first.root.is_dir()
    assert (second.root / "usr/share/seabios/bios-256k.bin").read_text() == "B"


def test_a_binary_that_does_not_run_leaves_no_entry(fake_suite):
    FakeApt.debs["qemu-system-x86"] = (
        BPO,
        build_deb(fake_suite, "qemu-system-x86", "10.0.2", {qemu_fetch.BINARY: "#!/bin/sh\n"}),
    )
    with pytest.raises(FetchError, match="does not run"):
        qemu_fetch.fetch(mirror="http://mirror.invalid/debian")
    assert qemu_fetch.newest_cached() is None
    assert not list((fake_suite / "cache" / "qemu").iterdir())


def test_a_missing_host_library_names_the_packages_to_install(fake_suite, monkeypatch):
    from ktstr.initramfs import elfdeps

    def missing(binaries):
        raise elfdeps.MissingLibrary("libfdt.so.1", str(binaries[0]))

    monkeypatch.setattr(elfdeps, "closure", missing)
    monkeypatch.setattr(qemu_fetch, "_installed_packages", lambda: {"libc6", "libaio1"})
    with pytest.raises(EnvironmentProblem) as err:
        qemu_fetch.fetch(mirror="http://mirror.invalid/debian")
    text = str(err.value)
    assert "libfdt.so.1" in text and "sudo apt-get install libfdt1 ipxe-qemu" in text
    assert "\n" not in text
