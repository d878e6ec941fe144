import os
import sys

import pytest

from ktstr.initramfs import elfdeps


def python_binary() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def test_python_closure_has_loader_and_libc():
    libs = elfdeps.closure([python_binary()])
    names = {os.path.basename(p) for p in libs}
    assert "libc.so.6" in names
    assert any(n.startswith("ld-linux") for n in names)
    for guest, host in libs.items():
        assert os.path.isfile(host), guest


def test_extension_module_pulls_its_library():
    import _ctypes

    libs = elfdeps.closure([_ctypes.__file__])
    assert any("libffi" in os.path.basename(p) for p in libs)


def test_read_elf_reports_needed_and_interp():
    info = elfdeps.read_elf(python_binary())
    assert info.interp and "ld-linux" in info.interp
    assert "libc.so.6" in info.needed or any("python" in n for n in info.needed)


def test_non_elf_is_skipped_and_missing_library_named(tmp_path, monkeypatch):
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert elfdeps.closure([text]) == {}
    info = elfdeps.ElfInfo(needed=["libdefinitely-not-here.so.9"])
    monkeypatch.setattr(elfdeps, "read_elf", lambda path: info)
    monkeypatch.setattr(elfdeps, "is_elf", lambda path: True)
    with pytest.raises(elfdeps.MissingLibrary, match="libdefinitely-not-here"):
        elfdeps.closure([text])
