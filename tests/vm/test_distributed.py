"""A gauntlet on a local Dask cluster: real VMs on worker processes, records landed here."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from tests.helpers import ktstr, wait_until
from tests.vm.conftest import qemu_pids_for

pytest.importorskip("distributed")


def test_gauntlet_on_a_local_dask_cluster_lands_records_with_their_run_directories(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(tmp_path))
    presets = "tiny-1llc,tiny-2llc"
    proc = ktstr("gauntlet", "steady", "--presets", presets, "--dask", "local:2", "--duration", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "steady[tiny-1llc]: PASS" in proc.stdout and "steady[tiny-2llc]: PASS" in proc.stdout
    listed = ktstr("results", "list")
    assert listed.returncode == 0, listed.stderr
    records = sorted(tmp_path.glob("*/record.json"))
    assert len(records) == 2
    for path in records:
        record = json.loads(path.read_text())
        assert record["verdict"] == "pass" and record["host"]
        assert [a["outcome"] for a in record["distributed"]["attempts"]] == ["done"]
        assert (path.parent / "console.log").stat().st_size > 0
        assert (path.parent / "channel.jsonl").stat().st_size > 0
        assert path.parent.name in listed.stdout
    assert not qemu_pids_for(str(tmp_path))


def test_a_killed_workers_variant_is_re_run_on_the_other_worker(tmp_path, monkeypatch):
    import dask
    import distributed

    from ktstr import gauntlet
    from ktstr.distributed.executor import DaskExecutor
    from ktstr.distributed.resources import host_resources
    from ktstr.distributed.task import EVENT_TOPIC
    from ktstr.record import load
    from ktstr.scheduler import EEVDF

    runs = tmp_path / "runs"
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(runs))
    cells = gauntlet.plan(["steady"], EEVDF, ["tiny-2llc"], None)
    done: list = []
    with (
        dask.config.set({"temporary-directory": str(tmp_path)}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            resources=host_resources(),
            dashboard_address=None,
            local_directory=str(tmp_path / "dask"),
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        executor = DaskExecutor(cluster.scheduler_address)
        thread = threading.Thread(
            target=lambda: done.extend(
                gauntlet.run(cells, EEVDF, 4, None, None, lambda *_: None, executor=executor)
            )
        )
        thread.start()
        started = wait_until(lambda: client.get_events(EVENT_TOPIC), "a variant starting")
        victim = started[0][1]["worker"]
        wait_until(lambda: qemu_pids_for(str(tmp_path / "dask")), "the variant's QEMU")
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        thread.join()
    assert len(done) == 1 and done[0].verdict == "pass"
    record, run_dir = load(done[0].run_dir)
    attempts = record["distributed"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["worker lost", "done"]
    assert attempts[0]["worker"] == victim != attempts[1]["worker"]
    assert (run_dir / "console.log").is_file()
    assert not qemu_pids_for(str(tmp_path))
