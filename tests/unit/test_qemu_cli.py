"""``ktstr qemu fetch``: fetches once, then says it is cached, offline too; skips when not needed.

Through the faked apt index of test_qemu_fetch (real, tiny .deb files).
"""

import pytest

from ktstr.cli import main
from ktstr.errors import FetchError
from ktstr.vm import qemu
from tests.unit.test_qemu_fetch import FakeApt, fake_suite  # noqa: F401 (a fixture)

MIRROR = ["--mirror", "http://mirror.invalid/debian"]


@pytest.fixture
def system(fake_suite, monkeypatch):  # noqa: F811
    """A fake system QEMU first on PATH; ``system(version)`` sets its version."""
    bindir = fake_suite / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin")
    qemu._version.cache_clear()

    def install(version: str) -> None:
        path = bindir / "qemu-system-x86_64"
        path.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version}'\n")
        path.chmod(0o755)
        qemu._version.cache_clear()

    yield install
    qemu._version.cache_clear()


def test_fetch_is_idempotent(system, capsys):
    system("7.2.22")
    assert main(["qemu", "fetch", *MIRROR]) == 0
    first = capsys.readouterr().out
    assert first.startswith("fetched: QEMU 10.0.2 in ") and FakeApt.downloads == 3
    assert main(["qemu", "fetch", *MIRROR]) == 0
    again = capsys.readouterr().out
    assert again == first.replace("fetched:", "already cached:") and FakeApt.downloads == 3


def test_a_mirror_that_cannot_be_reached_is_no_error_once_cached(system, monkeypatch, capsys):
    system("7.2.22")

    def unreachable(self):
        raise FetchError("apt-get update failed", "check the network")

    monkeypatch.setattr(FakeApt, "update", unreachable)
    assert main(["qemu", "fetch", *MIRROR]) == 2  # nothing cached: the one-sentence error
    assert "apt-get update failed" in capsys.readouterr().err
    monkeypatch.setattr(FakeApt, "update", lambda self: None)
    assert main(["qemu", "fetch", *MIRROR]) == 0
    capsys.readouterr()
    monkeypatch.setattr(FakeApt, "update", unreachable)
    assert main(["qemu", "fetch", *MIRROR]) == 0
    out = capsys.readouterr().out
    assert out.startswith("already cached: QEMU 10.0.2") and "not checked" in out


def test_nothing_is_fetched_when_the_system_qemu_is_new_enough(system, capsys):
    system("10.1.0")
    assert main(["qemu", "fetch", *MIRROR]) == 0
    out = capsys.readouterr().out
    assert out.startswith("not needed: the system QEMU 10.1.0") and FakeApt.downloads == 0
    assert main(["qemu", "fetch", "--force", *MIRROR]) == 0
    assert capsys.readouterr().out.startswith("fetched:") and FakeApt.downloads == 3


def test_help_says_what_it_is_for(capsys):
    with pytest.raises(SystemExit):
        main(["qemu", "fetch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "bookworm-backports" in text and "APIC IDs pass 255" in text and "Idempotent" in text
