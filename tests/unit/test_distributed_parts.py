"""The distributed executor's parts that need no cluster: shipping, outcomes, kernels, TLS.

Faked only at the host's edges: /proc/vmstat, the kernel cache lookup and Debian's archive.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ktstr.disk import Disk
from ktstr.distributed import kernel, outcome, shipping
from ktstr.distributed.landing import checked
from ktstr.distributed.task import MAX_FILE_BYTES
from ktstr.errors import ConfigError, FetchError, KernelError, QemuStartError, VmError


def test_a_shipment_lands_once_under_its_hash_and_a_damaged_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x").write_text("x")
    (tmp_path / "d" / "y").write_text("y")
    index, shipments = shipping.bundle([str(tmp_path / "d"), str(tmp_path / "d" / "y")])
    key = index[str(tmp_path / "d")]
    path = shipping.unpack(key, shipments[key])
    assert path == tmp_path / "cache" / "shipped" / key / "d"
    assert (path / "sub" / "x").read_text() == "x" and (path / "y").read_text() == "y"
    (path / "y").write_text("kept")  # a second unpack reuses what is there
    assert shipping.unpack(key, shipments[key]) == path and (path / "y").read_text() == "kept"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    with pytest.raises(QemuStartError, match="arrived damaged"):
        shipping.unpack(key, ("d", {"y": b"other"}))
    with pytest.raises(ConfigError, match="the client sent a file named"):
        shipping.unpack(shipping.digest(("d", {"../x": b""})), ("d", {"../x": b""}))


def test_the_same_content_under_another_name_or_place_hashes_alike_and_edits_do_not(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("same")
    b.write_text("same")
    index, _ = shipping.bundle([str(a), str(b)])
    assert index[str(a)] == index[str(b)]
    b.write_text("changed")
    assert shipping.bundle([str(b)])[0][str(b)] != index[str(a)]


def test_too_much_to_ship_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(shipping, "MAX_SHIPPED_BYTES", 10)
    (tmp_path / "big.img").write_bytes(b"0" * 11)
    with pytest.raises(ConfigError, match="more than 0 MiB .*big.img.*run without --dask"):
        shipping.bundle([str(tmp_path / "big.img")])


def test_what_a_variant_names_is_found_once_each(tmp_path):
    from ktstr import CgroupDef, Op, Scenario, Step
    from ktstr.scheduler import EEVDF, Scheduler

    steps = [Step([Op.add_cgroup(CgroupDef("cg", 1))])]
    own = Scenario("s", "", steps, include_files=["conf"], disks=[Disk("1MiB", backing="own.img")])
    mine = Scheduler("scx_m", binary="./scx_m", config_file="c.json", config_arg="-c")
    found = shipping.needed(["f.py::s", own, "steady"], mine, ["conf", "inc"], None)
    assert found == ["./scx_m", "c.json", "conf", "inc", "f.py", "own.img"]
    # --disk replaces the scenario's disks; a scheduler by name is found by each worker.
    named = Scheduler("scx_simple", binary="scx_simple")
    found = shipping.needed([own], named, [], (Disk("1MiB", backing="cli.img"),))
    assert found == ["cli.img", "conf"]
    assert shipping.needed(["steady"], EEVDF, [], None) == []


def test_a_qemu_killed_by_the_hosts_oom_killer_is_infrastructure_and_says_so():
    died = QemuStartError("QEMU failed (exit -9): no output", "see qemu.stderr.log")
    assert outcome.classify(died, 3, 4) == (
        "infrastructure",
        "the host ran out of memory: its OOM killer killed QEMU (QEMU failed (exit -9): no "
        "output; see qemu.stderr.log.)",
    )
    assert outcome.classify(died, 3, 3) == ("infrastructure", str(died))
    assert outcome.classify(died, None, None) == ("infrastructure", str(died))
    assert outcome.classify(MemoryError(), 1, 1)[0] == "infrastructure"


def test_a_verdict_path_failure_or_a_bug_is_never_infrastructure():
    panic = VmError("the guest kernel panicked (x)", "see console.log")
    assert outcome.classify(panic, 3, 4) == ("error", str(panic))
    assert outcome.classify(KernelError("no kernel"), 1, 1) == ("error", "no kernel.")
    kind, text = outcome.classify(TypeError("bad\nsecond line"), 1, 1)
    assert kind == "error" and text == "ktstr failed there (TypeError: bad)"


def test_the_oom_kill_count_is_read_from_vmstat(tmp_path):
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 12\noom_kill 7\npgfault 1\n")
    assert outcome.oom_kills(vmstat) == 7
    vmstat.write_text("nr_free_pages 12\n")  # kernels before 4.13 do not count
    assert outcome.oom_kills(vmstat) is None
    assert outcome.oom_kills(tmp_path / "absent") is None


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        ("a string", "no known outcome"),
        ({"outcome": "rm -rf"}, "no known outcome"),
        ({"outcome": "error", "host": 5}, "host is not text"),
        ({"outcome": "done", "files": ["x"]}, "not a bounded mapping"),
        ({"outcome": "done", "files": {"x": "text"}}, "file 'x' is not bytes"),
        ({"outcome": "done", "files": {"x": b"0" * (MAX_FILE_BYTES + 1)}}, "is not bytes within"),
    ],
)
def test_a_malformed_worker_result_becomes_one_error_sentence(sent, why):
    got = checked(sent)
    assert got["outcome"] == "error" and why in got["error"]


def test_a_workers_long_strings_are_cut():
    got = checked({"outcome": "error", "error": "e" * 5000, "host": "h" * 5000})
    assert len(got["error"]) == len(got["host"]) == 1000


@pytest.fixture
def no_cached_kernel(monkeypatch, tmp_path):
    """An empty kernel cache: resolve() finds nothing until a fake fetch installs one."""
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KTSTR_KERNEL", raising=False)
    fetched: list[str] = []

    def resolve(spec=None):
        if not fetched or (spec and spec != "7.2.13+deb14-cloud-amd64"):
            raise KernelError("no kernel with sched_ext is cached", "run 'ktstr kernel fetch'")

    monkeypatch.setattr(kernel, "resolve", resolve)
    return fetched


def test_a_worker_without_the_kernel_fetches_it_through_its_own_cache(
    no_cached_kernel, monkeypatch
):
    from ktstr.kernel import debian

    def fetch(flavour="cloud", *a, **k):
        no_cached_kernel.append(flavour)
        return debian.Fetched("7.2.13+deb14-cloud-amd64", Path("/x"), cached=False)

    monkeypatch.setattr(debian, "fetch", fetch)
    kernel.ensure(None)
    kernel.ensure("7.2.13+deb14-cloud-amd64")  # now cached: no second fetch
    assert no_cached_kernel == ["cloud"]
    with pytest.raises(KernelError, match=r"has no kernel 6.1, and Debian offers 7.2.13"):
        kernel.ensure("6.1")


def test_a_kernel_the_worker_cannot_fetch_is_one_sentence_naming_the_host(
    no_cached_kernel, monkeypatch
):
    import platform

    from ktstr.kernel import debian

    def fetch(*a, **k):
        raise FetchError("the mirror did not answer", "check the network")

    monkeypatch.setattr(debian, "fetch", fetch)
    with pytest.raises(KernelError) as err:
        kernel.ensure(None)
    text = str(err.value)
    assert text == (
        f"no kernel with sched_ext is cached on {platform.node()}, and fetching one failed "
        "(the mirror did not answer); run 'ktstr kernel fetch' on that host."
    )
    with pytest.raises(KernelError, match="put it at that path on every worker"):
        kernel.ensure("/boot/vmlinuz-nowhere")


def test_the_flavour_comes_from_the_release():
    assert kernel.flavour_of("7.2.13+deb14-cloud-amd64") == "cloud"
    assert kernel.flavour_of("7.2.13+deb14-amd64") == "generic"
    assert kernel.flavour_of(None) == "cloud"
