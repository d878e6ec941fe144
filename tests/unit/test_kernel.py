import pytest

from ktstr.errors import KernelError
from ktstr.kernel import debian, store
from ktstr.kernel.image import inspect, parse_config


def test_parse_config():
    cfg = parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="str"\nCONFIG_D=m\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_C": "str", "CONFIG_D": "m"}


def test_inspect_missing_path_is_one_sentence(tmp_path):
    with pytest.raises(KernelError) as err:
        inspect(tmp_path / "nope")
    assert "does not exist" in str(err.value) and "\n" not in str(err.value)


def test_inspect_refuses_random_file(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 8192)
    with pytest.raises(KernelError, match="neither a bzImage nor an ELF"):
        inspect(junk)


def test_resolve_without_cache_tells_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KTSTR_KERNEL", raising=False)
    with pytest.raises(KernelError, match="ktstr kernel fetch"):
        store.resolve()
    with pytest.raises(KernelError, match="does not exist"):
        store.resolve("/no/such/bzImage")
    with pytest.raises(KernelError, match="no cached kernel matches"):
        store.resolve("9.9.9-nothing")


def test_version_ordering():
    releases = ["6.12.117+deb13-cloud-amd64", "7.2.13+deb14-cloud-amd64", "7.2.9+deb14-cloud-amd64"]
    assert max(releases, key=store.version_key) == "7.2.13+deb14-cloud-amd64"


def test_apt_mirror_from_deb822_and_one_line(tmp_path):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: x\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert debian.apt_mirror(etc) == "http://mirror.example/debian"
    (etc / "sources.list").write_text("deb [arch=amd64] https://other.example/debian/ sid main\n")
    assert debian.apt_mirror(etc) == "https://other.example/debian"


def test_apt_mirror_absent(tmp_path):
    assert debian.apt_mirror(tmp_path) is None


def test_parse_stanza_and_depends():
    text = (
        "Package: linux-image-cloud-amd64\nVersion: 7.2.13-1\n"
        "Depends: linux-base-cloud-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-cloud-amd64 "
        "(= 7.2.13-1)\nDescription: meta\n continued line\n\nPackage: second\n"
    )
    fields = debian.parse_stanza(text)
    assert fields["Version"] == "7.2.13-1"
    assert fields["Description"] == "meta\ncontinued line"
    assert debian.depends_names(fields["Depends"]) == [
        "linux-base-cloud-amd64",
        "linux-image-7.2.13+deb14-cloud-amd64",
    ]
    assert debian.depends_names("a | b, c") == ["a", "c"]


def test_unknown_flavour_refused():
    with pytest.raises(Exception, match="unknown flavour"):
        debian.fetch(flavour="nope")
