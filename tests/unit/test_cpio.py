import io
import shutil
import stat
import subprocess

import pytest

from ktstr.initramfs import cpio


def build() -> cpio.Archive:
    a = cpio.Archive()
    a.add_file("bin/tool", b"\x7fELF binary", 0o755)
    a.add_file("/etc/motd", b"hello\n")
    a.add_symlink("bin/sh", "tool")
    a.add_char_device("dev/console", 5, 1)
    a.add_file("odd/size", b"x" * 5)
    return a


def written(a: cpio.Archive) -> bytes:
    buf = io.BytesIO()
    a.write(buf)
    return buf.getvalue()


def test_round_trip_through_reader():
    entries = {e.path: e for e in cpio.read(written(build()))}
    assert entries["bin/tool"].data == b"\x7fELF binary"
    assert stat.S_IMODE(entries["bin/tool"].mode) == 0o755
    assert stat.S_ISLNK(entries["bin/sh"].mode) and entries["bin/sh"].data == b"tool"
    assert stat.S_ISCHR(entries["dev/console"].mode) and entries["dev/console"].rdev == (5, 1)
    assert stat.S_ISDIR(entries["etc"].mode)  # parents are created
    assert entries["odd/size"].data == b"xxxxx"


def test_deterministic_regardless_of_insertion_order():
    a, b = cpio.Archive(), cpio.Archive()
    a.add_file("z", b"1")
    a.add_file("a", b"2")
    b.add_file("a", b"2")
    b.add_file("z", b"1")
    assert written(a) == written(b)
    assert [e.path for e in cpio.read(written(b))] == ["a", "z"]  # sorted by path


def test_concatenated_archives_read_as_one():
    first, second = cpio.Archive(), cpio.Archive()
    first.add_file("base", b"b")
    second.add_file("run/spec.json", b"{}")
    paths = [e.path for e in cpio.read(written(first) + written(second))]
    assert "base" in paths and "run/spec.json" in paths


@pytest.mark.skipif(not shutil.which("cpio"), reason="GNU cpio not installed")
def test_gnu_cpio_lists_and_extracts(tmp_path):
    data = written(build())
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True)
    names = listing.stdout.decode().split()
    assert {"bin/tool", "bin/sh", "etc/motd", "dev/console"} <= set(names)
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-absolute-filenames"],
        input=data,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "etc/motd").read_bytes() == b"hello\n"
    assert (tmp_path / "bin/sh").is_symlink()


def test_bad_paths_refused():
    with pytest.raises(ValueError):
        cpio.Archive().add_file("/", b"")
