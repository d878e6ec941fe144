"""The Dask executor on a real LocalCluster; only the VM run is faked (``run_scenario``)."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ktstr import gauntlet  # noqa: E402
from ktstr.disk import Disk, Throttle  # noqa: E402
from ktstr.distributed import executor as dask_executor  # noqa: E402
from ktstr.distributed import kernel as kernel_module  # noqa: E402
from ktstr.distributed import shipping  # noqa: E402
from ktstr.distributed import task as dask_task  # noqa: E402
from ktstr.distributed.executor import DaskExecutor, check_admission  # noqa: E402
from ktstr.errors import (  # noqa: E402
    ConfigError,
    EnvironmentProblem,
    FetchError,
    KtstrError,
    QemuStartError,
    VmError,
)
from ktstr.results import store  # noqa: E402
from ktstr.scheduler import EEVDF, Flag, Scheduler  # noqa: E402
from tests.distributed_fakes import DieOnceThenPass, fake_run  # noqa: E402

PRESETS = ["tiny-1llc", "tiny-2llc"]


ENSURE = kernel_module.ensure


@pytest.fixture(autouse=True)
def kernel_present(monkeypatch):
    """The workers here run no VM: the kernel a variant names is taken as cached."""
    monkeypatch.setattr("ktstr.distributed.kernel.ensure", lambda spec: None)


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(root))
    return root


def run(cells, executor=None, **kw):
    done = []
    cells_out = gauntlet.run(
        cells,
        EEVDF,
        4,
        None,
        "tcg",
        lambda cell, i, n: done.append((cell, i, n)),
        executor=executor or DaskExecutor("local:2", processes=False),
        **kw,
    )
    return cells_out, done


def steady_cells(presets=PRESETS):
    return gauntlet.plan(["steady"], EEVDF, presets, None)


def test_a_task_travels_as_wire_json_and_comes_back_equal():
    sched = Scheduler(
        "scx_x",
        binary="scx_x",
        args=("-v",),
        flags={"a": Flag(("--a",), excludes=("b",)), "b": Flag(("--b",))},
    )
    disks = (Disk("1MiB", throttle=Throttle(iops=5), serial="s1"),)
    task = dask_task.Task(
        "steady",
        "tiny-1llc/a",
        "1n1l4c1t",
        dask_task.scheduler_spec(sched),
        "a",
        4.0,
        None,
        "tcg",
        dask_task.disk_specs(disks),
    )
    again = dask_task.Task.from_wire(task.to_wire())
    assert again == task
    assert dask_task.scheduler_from(again.scheduler) == sched
    assert dask_task.disks_from(again.disks) == disks


def test_records_and_run_files_land_in_the_clients_store_as_each_ends(runs, monkeypatch):
    monkeypatch.setattr("ktstr.runner.run_scenario", fake_run())
    cells, done = run(steady_cells())
    assert [c.verdict for c in cells] == ["pass", "pass"]
    assert [(i, n) for _, i, n in done] == [(1, 2), (2, 2)]
    for cell in cells:
        run_dir = Path(cell.run_dir)
        assert run_dir.parent == runs
        assert (run_dir / "console.log").read_text().startswith("console of")
        assert (run_dir / "sub" / "channel.jsonl").is_file()
    rows = store.query({}, runs)
    assert sorted(r["topology"] for r in rows) == ["1n1l4c1t", "1n2l2c1t"]
    assert all(r["host"] for r in rows)
    from ktstr.record import load

    record, _ = load(cells[0].run_dir)
    attempts = record["distributed"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["done"]
    # The workers' scratch run directories are gone; only the landed ones remain.
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == sorted(
        Path(c.run_dir).name for c in cells
    )


def test_qemu_that_did_not_start_is_retried_and_every_attempt_recorded(runs, monkeypatch):
    passing, failed = fake_run(), []

    def flaky(scenario, topology, *a, **k):
        if topology.name not in failed:
            failed.append(topology.name)
            raise QemuStartError("QEMU failed (exit 1): no", "see qemu.stderr.log")
        return passing(scenario, topology, *a, **k)

    monkeypatch.setattr("ktstr.runner.run_scenario", flaky)
    cells, _ = run(steady_cells(["tiny-2llc"]))
    from ktstr.record import load

    record, _ = load(cells[0].run_dir)
    outcomes = [a["outcome"] for a in record["distributed"]["attempts"]]
    assert outcomes == ["infrastructure", "done"]
    assert "QEMU failed" in record["distributed"]["attempts"][0]["error"]


def test_infrastructure_failures_stop_after_two_retries(runs, monkeypatch):
    calls = []

    def broken(*a, **k):
        calls.append(1)
        raise QemuStartError("QEMU failed (exit 1): no")

    monkeypatch.setattr("ktstr.runner.run_scenario", broken)
    host = re.escape(platform.node())
    with pytest.raises(
        VmError,
        match=rf"steady\[tiny-2llc\] failed on 3 attempts \(on {host}, {host}, {host}\), the "
        r"last with: QEMU failed",
    ):
        run(steady_cells(["tiny-2llc"]))
    assert len(calls) == 3


def test_qemu_killed_by_the_hosts_oom_killer_is_retried_and_the_record_says_so(
    runs, tmp_path, monkeypatch
):
    from ktstr.distributed import outcome

    vmstat = tmp_path / "vmstat"
    vmstat.write_text("oom_kill 3\n")
    monkeypatch.setattr(outcome, "VMSTAT", vmstat)
    passing, killed = fake_run(), []

    def oom_once(*a, **k):
        if not killed:
            killed.append(1)
            vmstat.write_text("oom_kill 4\n")  # the kernel's OOM killer took QEMU
            raise QemuStartError("QEMU failed (exit -9): no output", "see qemu.stderr.log")
        return passing(*a, **k)

    monkeypatch.setattr("ktstr.runner.run_scenario", oom_once)
    cells, _ = run(steady_cells(["tiny-2llc"]))
    from ktstr.record import load

    attempts = load(cells[0].run_dir)[0]["distributed"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["infrastructure", "done"]
    assert attempts[0]["error"].startswith("the host ran out of memory: its OOM killer killed QEMU")


def test_a_worker_that_cannot_get_the_kernel_ends_in_one_sentence(runs, monkeypatch):
    from ktstr.kernel import debian

    monkeypatch.setattr("ktstr.distributed.kernel.ensure", ENSURE)
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(runs.parent / "cache"))
    monkeypatch.delenv("KTSTR_KERNEL", raising=False)

    def offline(*a, **k):
        raise FetchError("the mirror did not answer", "check the network")

    monkeypatch.setattr(debian, "fetch", offline)
    monkeypatch.setattr("ktstr.runner.run_scenario", fake_run())
    with pytest.raises(KtstrError) as err:
        run(steady_cells(["tiny-2llc"]))
    assert err.value.exit_code == 2
    assert re.fullmatch(
        r"steady\[tiny-2llc\] on (\S+): no kernel with sched_ext is cached on \1, and fetching "
        r"one failed \(the mirror did not answer\); run 'ktstr kernel fetch' on that host\.",
        str(err.value),
    ), str(err.value)
    assert not list(runs.glob("*/record.json"))


def test_a_bug_on_the_worker_is_one_sentence_on_the_client(runs, monkeypatch):
    def broken(*a, **k):
        raise TypeError("unexpected keyword 'x'")

    monkeypatch.setattr("ktstr.runner.run_scenario", broken)
    with pytest.raises(
        KtstrError,
        match=r"steady\[tiny-2llc\] on \S+: ktstr failed there \(TypeError: unexpected keyword",
    ):
        run(steady_cells(["tiny-2llc"]))


def test_a_verdict_is_never_retried(runs, monkeypatch):
    calls = []
    failing = fake_run("fail")

    def once(*a, **k):
        calls.append(1)
        return failing(*a, **k)

    monkeypatch.setattr("ktstr.runner.run_scenario", once)
    cells, _ = run(steady_cells(["tiny-2llc"]))
    assert [c.verdict for c in cells] == ["fail"] and len(calls) == 1


def test_a_variant_that_cannot_run_ends_in_one_sentence_naming_it_and_the_host(runs, monkeypatch):
    def no_kernel(*a, **k):
        raise ConfigError("no kernel 9.9 in the cache", "run 'ktstr kernel fetch'")

    monkeypatch.setattr("ktstr.runner.run_scenario", no_kernel)
    with pytest.raises(Exception, match=r"steady\[tiny-2llc\] on .+: no kernel 9.9") as err:
        run(steady_cells(["tiny-2llc"]))
    assert "\n" not in str(err.value)


def test_a_worker_of_another_version_is_refused(runs, monkeypatch):
    monkeypatch.setattr("ktstr.runner.run_scenario", fake_run())
    monkeypatch.setattr(dask_executor, "__version__", "0.0.1")
    with pytest.raises(ConfigError, match="runs ktstr .* and this client ktstr 0.0.1"):
        run(steady_cells(["tiny-2llc"]))
    task = dask_task.Task(
        "steady",
        "x",
        "1n1l4c1t",
        dask_task.scheduler_spec(EEVDF),
        None,
        4.0,
        None,
        "tcg",
        version="0.0.1",
    )
    outcome = dask_task.execute(task.to_wire(), "k")
    assert outcome["outcome"] == "refused" and "client 0.0.1" in outcome["error"]
    newer = json.dumps({**json.loads(task.to_wire()), "version": "9.0", "a_later_field": 1})
    outcome = dask_task.execute(newer, "k")
    assert outcome["outcome"] == "refused" and "client 9.0" in outcome["error"]


def test_no_worker_big_enough_is_refused_before_anything_runs(runs, monkeypatch):
    monkeypatch.setattr("ktstr.runner.run_scenario", fake_run())
    monkeypatch.setattr(
        dask_executor, "host_resources", lambda: {"vcpus": 2.0, "mem_mib": 600.0, "kvm": 0.0}
    )
    with pytest.raises(
        ConfigError,
        match=r"no Dask worker can run steady\[smt-2llc\]: it needs "
        r"\d+ vcpus, 640 MiB, and the largest worker offers 2 vcpus, 600 MiB",
    ):
        run(steady_cells(["tiny-2llc", "smt-2llc"]))
    assert not runs.exists() or not list(runs.glob("*/record.json"))


def test_admission_asks_for_kvm_only_when_asked():
    cells = steady_cells(["tiny-2llc"])
    kvm = dask_executor.variant_request(dask_executor.Topology.parse("1n2l2c1t"), "kvm", None)
    assert kvm == {"vcpus": 4.0, "mem_mib": 576.0, "kvm": 1.0}
    with pytest.raises(ConfigError, match="needs 4 vcpus, 576 MiB, kvm"):
        check_admission(cells, [kvm], {"w": {"vcpus": 16.0, "mem_mib": 9999.0, "kvm": 0.0}})
    check_admission(cells, [kvm], {"w": {"vcpus": 4.0, "mem_mib": 576.0, "kvm": 1.0}})


def test_an_unreachable_scheduler_is_one_sentence():
    with pytest.raises(
        EnvironmentProblem, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    ):
        run(steady_cells(["tiny-2llc"]), DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=1))


def test_the_cli_says_an_unreachable_scheduler_in_one_sentence(runs):
    from tests.helpers import assert_one_sentence, ktstr

    proc = ktstr("gauntlet", "steady", "--presets", "tiny-2llc", "--dask", "tcp://127.0.0.1:9")
    assert_one_sentence(proc, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def ignores_sigint() -> bool:
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_local_clusters_worker_processes_leave_ctrl_c_to_the_client():
    """A terminal's Ctrl-C reaches them too: they ignore it, and the client stops them."""
    import signal

    # As in a terminal (a background job would start with SIGINT ignored, hiding the point).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with dask_executor.connect(DaskExecutor("local:1")) as client:
            client.wait_for_workers(1)
            ignoring = client.run(ignores_sigint)
    finally:
        signal.signal(signal.SIGINT, before)
    assert list(ignoring.values()) == [True]


def test_a_malformed_local_cluster_is_refused():
    with pytest.raises(ConfigError, match="local:N"):
        DaskExecutor("local:0").local_workers()
    assert DaskExecutor("local").local_workers() == 2
    assert DaskExecutor("tcp://h:8786").local_workers() is None


def test_without_dask_one_sentence_names_the_extra(monkeypatch):
    from ktstr.distributed import require

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(EnvironmentProblem, match=r"pip install 'ktstr\[distributed\]'"):
        require()


def test_a_killed_workers_variant_runs_again_on_another(runs, tmp_path):
    """Worker processes: the first variant kills its worker; Dask re-queues it elsewhere and
    the record lists the lost attempt."""
    import dask
    import distributed

    with (
        dask.config.set({"temporary-directory": str(tmp_path)}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            resources={"vcpus": 4.0, "mem_mib": 4096.0},
            dashboard_address=None,
            local_directory=str(tmp_path / "dask"),
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        client.register_plugin(DieOnceThenPass(str(tmp_path / "died")))
        cells, _ = run(steady_cells(["tiny-2llc"]), DaskExecutor(cluster.scheduler_address))
    from ktstr.record import load

    record, _ = load(cells[0].run_dir)
    attempts = record["distributed"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["worker lost", "done"]
    assert attempts[0]["worker"] != attempts[1]["worker"]
    assert record["distributed"]["worker"] == attempts[1]["worker"]


def test_ktstr_worker_offers_this_hosts_resources_and_leaves_nothing_behind(tmp_path):
    import signal
    import subprocess

    import dask
    import distributed

    from ktstr.distributed.resources import host_resources

    env = dict(os.environ, TMPDIR=str(tmp_path / "worker"))
    (tmp_path / "worker").mkdir()
    with (
        dask.config.set({"temporary-directory": str(tmp_path / "dask")}),
        distributed.LocalCluster(
            n_workers=0, processes=False, protocol="tcp", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ktstr.cli", "worker", cluster.scheduler_address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            client.wait_for_workers(1, timeout=60)
            offered = [w["resources"] for w in client.scheduler_info()["workers"].values()]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    expected = host_resources()
    assert offered[0]["vcpus"] == expected["vcpus"] and offered[0]["kvm"] == expected["kvm"]
    assert offered[0]["mem_mib"] > 0
    assert "Traceback" not in err
    assert not list((tmp_path / "worker").iterdir())  # its scratch directory is gone


def test_a_scheduler_named_by_path_is_shipped_and_cached_by_its_hash(runs, tmp_path, monkeypatch):
    binary = tmp_path / "scx_mine"
    binary.write_bytes(b"\x7fELF not really")
    config = tmp_path / "mine.json"
    config.write_text("{}")
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    seen = recorded(monkeypatch)
    mine = Scheduler("scx_mine", binary=str(binary), config_file=str(config), config_arg="-c")
    cells = gauntlet.plan(["steady"], mine, ["tiny-2llc"], None)
    gauntlet.run(
        cells,
        mine,
        4,
        None,
        "tcg",
        lambda *_: None,
        executor=DaskExecutor("local:1", processes=False),
    )
    digest = shipping.digest(("scx_mine", binary.read_bytes()))
    shipped = Path(seen[0]["scheduler"].binary)
    assert shipped == tmp_path / "cache" / "shipped" / digest / "scx_mine"
    assert shipped.read_bytes() == binary.read_bytes() and seen[0]["scheduler"].name == "scx_mine"
    assert Path(seen[0]["scheduler"].config_file).read_text() == "{}"
    assert Path(seen[0]["scheduler"].config_file).is_relative_to(tmp_path / "cache" / "shipped")


def recorded(monkeypatch) -> list[dict]:
    """What each faked run was given (its record and files as fake_run makes them)."""
    seen: list[dict] = []
    passing = fake_run()

    def run_scenario(scenario, topology, *a, **k):
        seen.append({"scenario": scenario, **k})
        return passing(scenario, topology)

    monkeypatch.setattr("ktstr.runner.run_scenario", run_scenario)
    return seen


USER_SCENARIO = """
from pathlib import Path

from ktstr import CgroupDef, Disk, Op, Scenario, Step

mine = Scenario(
    "mine",
    "a user's scenario with files of its own",
    [Step([Op.add_cgroup(CgroupDef("cg", 1))])],
    include_files=[Path(__file__).parent / "conf.txt"],  # beside the file, wherever it is
    disks=[Disk("1MiB", backing="{image}")],
)
"""


def test_include_files_scenario_files_and_disk_images_travel_with_the_variant(
    runs, tmp_path, monkeypatch
):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path / "cache"))
    shipped_root = tmp_path / "cache" / "shipped"
    conf, image, extra = tmp_path / "conf.txt", tmp_path / "disk.img", tmp_path / "extra"
    conf.write_text("scenario's own")
    image.write_bytes(b"\0" * 4096)
    (extra / "sub").mkdir(parents=True)
    (extra / "sub" / "data").write_text("in a directory")
    user = tmp_path / "user.py"
    user.write_text(USER_SCENARIO.format(image=image))
    seen = recorded(monkeypatch)
    cells = gauntlet.plan([f"{user}::mine"], EEVDF, ["tiny-2llc"], None)
    ro = tmp_path / "ro.img"
    ro.write_bytes(b"\1" * 4096)
    run(cells, include=(str(extra),))
    run(cells, disks=(Disk("1MiB", backing=str(ro), read_only=True),))
    first, second = seen
    assert first["scenario"].name == "mine" and first["scenario"].description.startswith("a user")
    (included,) = first["include"]
    assert Path(included).is_relative_to(shipped_root) and Path(included).name == "extra"
    assert (Path(included) / "sub" / "data").read_text() == "in a directory"
    (own,) = first["scenario"].include_files
    assert Path(own).is_relative_to(shipped_root) and Path(own).read_text() == "scenario's own"
    # The scenario's writable disk image was copied for that run alone (and removed with its
    # scratch space); the cache keeps the bytes its hash names.
    (disk,) = first["scenario"].disks
    assert not disk.backing.startswith(str(shipped_root)) and not Path(disk.backing).exists()
    assert (shipped_root / shipping.digest(("disk.img", image.read_bytes())) / "disk.img").is_file()
    # A read-only --disk image is used from the cache as it is.
    (ro_disk,) = second["disks"]
    assert Path(ro_disk.backing).is_relative_to(shipped_root)
    assert Path(ro_disk.backing).read_bytes() == ro.read_bytes()


def test_a_file_named_but_missing_on_the_client_is_one_sentence(runs, monkeypatch):
    recorded(monkeypatch)
    cells = steady_cells(["tiny-2llc"])
    with pytest.raises(ConfigError, match="nowhere.img does not exist on this host"):
        run(cells, disks=(Disk("1MiB", backing="/nowhere.img"),))


def test_the_cli_refuses_a_malformed_local_cluster_in_one_sentence(runs):
    from tests.helpers import assert_one_sentence, ktstr

    proc = ktstr("gauntlet", "steady", "--presets", "tiny-2llc", "--dask", "local:0")
    assert_one_sentence(proc, "--dask 'local:0' is not local:N")


def test_only_the_distributed_package_imports_dask():
    """Dask is an optional extra: everything else must import without it."""
    from tests.unit.test_layering import SRC, imports, under

    own = SRC / "ktstr" / "distributed"
    found = [
        f"{path.relative_to(SRC)}:{imp.line}"
        for path in sorted((SRC / "ktstr").rglob("*.py"))
        if not path.is_relative_to(own)
        for imp in imports(path, SRC)
        if any(under(t, "distributed") or under(t, "dask") for t in imp.targets)
    ]
    assert found == []


@pytest.fixture
def certificate(tmp_path) -> tuple[str, str]:
    """A self-signed certificate and its key: the CA of every side, and each side's own."""
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=ktstr-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def test_tls_options_reach_dasks_security_and_a_tls_cluster_runs_the_gauntlet(
    runs, certificate, monkeypatch
):
    import distributed

    from ktstr.distributed.security import Tls

    cert, key = certificate
    tls = Tls(cert, cert, key)
    client_side = tls.security("client")
    assert client_side.require_encryption
    assert (client_side.tls_ca_file, client_side.tls_client_cert) == (cert, cert)
    assert client_side.tls_client_key == key
    assert tls.security("worker").tls_worker_cert == cert
    monkeypatch.setattr("ktstr.runner.run_scenario", fake_run())
    everyone = distributed.Security(
        require_encryption=True,
        tls_ca_file=cert,
        **{
            f"tls_{role}_{part}": path
            for role in ("scheduler", "worker", "client")
            for part, path in (("cert", cert), ("key", key))
        },
    )
    with distributed.LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tls://",
        security=everyone,
        resources={"vcpus": 4.0, "mem_mib": 4096.0},
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        cells, _ = run(steady_cells(["tiny-2llc"]), DaskExecutor(address, tls=tls))
        assert [c.verdict for c in cells] == ["pass"]


def test_tls_options_are_checked_in_one_sentence(runs, certificate):
    from tests.helpers import assert_one_sentence, ktstr

    cert, key = certificate
    base = ("gauntlet", "steady", "--presets", "tiny-2llc")
    proc = ktstr(*base, "--dask", "tcp://h:8786", "--dask-tls-ca", cert, "--dask-tls-cert", cert)
    assert_one_sentence(proc, "which is not tls://")
    proc = ktstr(*base, "--dask", "tls://h:8786", "--dask-tls-ca", cert)
    assert_one_sentence(proc, "TLS needs both --dask-tls-ca and --dask-tls-cert")
    proc = ktstr("worker", "tls://h:8786", "--tls-ca", cert, "--tls-cert", "/nowhere.pem")
    assert_one_sentence(proc, "the TLS certificate file /nowhere.pem does not exist")
    proc = ktstr(*base, "--dask", "local:1", "--dask-tls-ca", cert, "--dask-tls-cert", cert)
    assert_one_sentence(proc, "which is not tls://")


def test_ktstr_worker_joins_a_tls_scheduler_with_its_tls_options(tmp_path, certificate):
    import signal
    import subprocess

    import distributed

    from tests.helpers import HANG_GUARD_S

    cert, key = certificate
    everyone = distributed.Security(
        require_encryption=True,
        tls_ca_file=cert,
        **{
            f"tls_{role}_{part}": path
            for role in ("scheduler", "client")
            for part, path in (("cert", cert), ("key", key))
        },
    )
    env = dict(os.environ, TMPDIR=str(tmp_path))
    with (
        distributed.LocalCluster(
            n_workers=0,
            processes=False,
            protocol="tls://",
            security=everyone,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        worker = [sys.executable, "-m", "ktstr.cli", "worker", cluster.scheduler_address]
        proc = subprocess.Popen(
            [*worker, "--tls-ca", cert, "--tls-cert", cert, "--tls-key", key],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            client.wait_for_workers(1, timeout=HANG_GUARD_S)
            joined = list(client.scheduler_info()["workers"])
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert len(joined) == 1 and joined[0].startswith("tls://"), err
    assert "Traceback" not in err
