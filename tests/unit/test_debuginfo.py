"""Kernel debug info: build ids, the one-member extraction, the cache entry's life."""

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ktstr.errors import FetchError, KernelError
from ktstr.kernel import debian, debuginfo

RELEASE = "9.9.9-test-amd64"


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def elf_with_notes(path: Path, notes: bytes, debug_info: bool = False) -> Path:
    """A minimal ELF64: one PT_NOTE segment, and sections only when ``debug_info``."""
    ehsize, phentsize, shentsize = 64, 56, 64
    notes_off = ehsize + phentsize
    body = bytearray(notes)
    shoff = shnum = shstrndx = 0
    sections = b""
    if debug_info:
        strtab = b"\0.debug_info\0.shstrtab\0"
        dbg_off = notes_off + len(body)
        body += b"\x01" * 16
        str_off = notes_off + len(body)
        body += strtab
        shoff = notes_off + len(body)
        shnum, shstrndx = 3, 2
        sections = b"\0" * shentsize
        sections += struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, dbg_off, 16, 0, 0, 1, 0)
        sections += struct.pack("<IIQQQQIIQQ", 13, 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0)
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0, ehsize, shoff, 0, ehsize, phentsize, 1, shentsize,
        shnum, shstrndx,
    )  # fmt: skip
    phdr = struct.pack("<IIQQQQQQ", 4, 4, notes_off, 0, 0, len(notes), len(notes), 4)
    path.write_bytes(header + phdr + bytes(body) + sections)
    return path


def gnu_build_id(hex_id: str) -> bytes:
    return note(b"GNU\0", 3, bytes.fromhex(hex_id))


def test_build_id_reads_the_gnu_note_not_a_xen_note_of_the_same_type(tmp_path):
    # A kernel's .notes carry Xen notes whose type 3 pyelftools also names NT_GNU_BUILD_ID.
    xen = note(b"Xen\0", 3, b"\0\0\0\x80\xff\xff\xff\xff")
    path = elf_with_notes(tmp_path / "vmlinux", xen + gnu_build_id("8a55a05d"))
    assert debuginfo.build_id(path) == "8a55a05d"
    assert debuginfo.build_id(elf_with_notes(tmp_path / "none", xen)) is None
    (tmp_path / "junk").write_bytes(b"not an elf")
    assert debuginfo.build_id(tmp_path / "junk") is None


def test_has_dwarf(tmp_path):
    assert debuginfo.has_dwarf(elf_with_notes(tmp_path / "dbg", b"", debug_info=True))
    assert not debuginfo.has_dwarf(elf_with_notes(tmp_path / "plain", b""))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_find_without_debug_info_names_the_fix_in_one_sentence(cache, tmp_path):
    kernel = elf_with_notes(tmp_path / "vmlinux", gnu_build_id("aa"))
    with pytest.raises(KernelError) as err:
        debuginfo.find(RELEASE, kernel)
    text = str(err.value)
    assert "has no debug info" in text and "ktstr kernel fetch --debug" in text
    assert "\n" not in text


def test_find_prefers_the_kernels_own_dwarf(cache, tmp_path):
    kernel = elf_with_notes(tmp_path / "vmlinux", gnu_build_id("aa"), debug_info=True)
    found = debuginfo.find(RELEASE, kernel)
    assert found.path == kernel and found.source == "vmlinux" and found.build_id == "aa"


def test_find_refuses_debug_info_of_another_build(cache, tmp_path):
    entry = cache / "debug" / RELEASE
    entry.mkdir(parents=True)
    elf_with_notes(entry / "vmlinux", gnu_build_id("bb"), debug_info=True)
    (entry / "meta.json").write_text("{}")
    kernel = elf_with_notes(tmp_path / "vmlinux", gnu_build_id("aa"))
    with pytest.raises(KernelError, match="another build of the kernel.*--debug --force"):
        debuginfo.find(RELEASE, kernel)
    elf_with_notes(entry / "vmlinux", gnu_build_id("aa"), debug_info=True)
    assert debuginfo.find(RELEASE, kernel).source == "cache"


def make_deb(tmp_path: Path, vmlinux: Path, release: str = RELEASE) -> Path:
    """A real .deb laid out like Debian's -dbg package: the vmlinux among module files."""
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed")
    tree = tmp_path / "pkg"
    mod = tree / f"usr/lib/debug/lib/modules/{release}"
    (mod / "kernel/drivers").mkdir(parents=True)
    (mod / "kernel/drivers/virtio_blk.ko").write_bytes(b"module debug info" * 100)
    shutil.copy(vmlinux, mod / "vmlinux")
    (tree / "usr/lib/debug/boot").mkdir(parents=True)
    (tree / f"usr/lib/debug/boot/vmlinux-{release}").symlink_to(f"../lib/modules/{release}/vmlinux")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        f"Package: linux-image-{release}-dbg\nVersion: 1\nArchitecture: amd64\n"
        "Maintainer: t <t@example.org>\nDescription: test\n"
    )
    deb = tmp_path / "test-dbg.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    return deb


def test_extract_writes_only_the_vmlinux(tmp_path):
    vmlinux = elf_with_notes(tmp_path / "src-vmlinux", gnu_build_id("aa"), debug_info=True)
    deb = make_deb(tmp_path, vmlinux)
    out = tmp_path / "out"
    out.mkdir()
    member = debuginfo.extract_vmlinux(deb, RELEASE, out / "vmlinux")
    assert member.endswith(f"lib/modules/{RELEASE}/vmlinux")
    assert [p.name for p in out.iterdir()] == ["vmlinux"]
    assert (out / "vmlinux").read_bytes() == vmlinux.read_bytes()
    with pytest.raises(FetchError, match="holds no vmlinux debug file"):
        debuginfo.extract_vmlinux(deb, "other-release", out / "other")


class FakeApt:
    """The private apt state's interface, serving one local .deb."""

    def __init__(self, deb: Path, sha256: str) -> None:
        self.deb, self.sha256 = deb, sha256

    def update(self) -> None:
        pass

    def show(self, package: str) -> dict[str, str]:
        if not package.endswith("-dbg"):
            raise FetchError(f"package {package} is not in the suite")
        return {"Package": package, "Version": "1", "Size": "1234", "SHA256": self.sha256}

    def download(self, package: str, dest: Path, version: str | None = None) -> Path:
        path = dest / debian.deb_name(self.show(package))
        shutil.copy(self.deb, path)
        return path


def test_fetch_caches_atomically_and_leaves_nothing_on_failure(cache, tmp_path, monkeypatch):
    dbg = elf_with_notes(tmp_path / "src-vmlinux", gnu_build_id("aa"), debug_info=True)
    deb = make_deb(tmp_path, dbg)
    apt = FakeApt(deb, debian.sha256_file(deb))
    monkeypatch.setattr(debian, "private_apt", lambda suite, mirror: (apt, "http://m/debian"))
    wrong_kernel = elf_with_notes(tmp_path / "other", gnu_build_id("bb"))
    with pytest.raises(KernelError, match="another build"):
        debuginfo.fetch(RELEASE, wrong_kernel)
    assert list((cache / "debug").iterdir()) == []  # no entry, no staging dir, no .deb
    kernel = elf_with_notes(tmp_path / "vmlinux", gnu_build_id("aa"))
    fetched = debuginfo.fetch(RELEASE, kernel)
    assert not fetched.cached and fetched.download_bytes == 1234
    assert [p.name for p in (cache / "debug").iterdir()] == [RELEASE]
    assert sorted(p.name for p in (cache / "debug" / RELEASE).iterdir()) == [
        "meta.json",
        "vmlinux",
    ]
    debuginfo.verify(RELEASE)
    assert debuginfo.fetch(RELEASE, kernel).cached
    (cache / "debug" / RELEASE / "vmlinux").write_bytes(b"truncated")
    with pytest.raises(KernelError, match="does not match the hash"):
        debuginfo.verify(RELEASE)


def test_fetch_of_a_release_without_a_dbg_package_is_one_sentence(cache, tmp_path, monkeypatch):
    apt = FakeApt(tmp_path / "none.deb", "0")
    apt.show = lambda package: (_ for _ in ()).throw(FetchError("not in the suite"))
    monkeypatch.setattr(debian, "private_apt", lambda suite, mirror: (apt, "http://m/debian"))
    kernel = elf_with_notes(tmp_path / "vmlinux", gnu_build_id("aa"))
    with pytest.raises(FetchError) as err:
        debuginfo.fetch(RELEASE, kernel)
    assert f"linux-image-{RELEASE}-dbg is not in unstable" in str(err.value)


def test_kernel_fetch_offers_debug_info():
    from tests.helpers import ktstr

    proc = ktstr("kernel", "fetch", "--help")
    assert proc.returncode == 0 and "--debug" in proc.stdout
