"""A gauntlet on a local Dask cluster: real VMs on worker processes, records landed here.

Both tests run the CLI as a user would, with ``--dask local:2``: its two workers are
child processes of the client, and every VM is a child of one of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import finish, wait_until
from tests.vm.conftest import qemu_pids_for

pytest.importorskip("distributed")

GAUNTLET = ("gauntlet", "steady", "--presets", "tiny-1llc,tiny-2llc,smt-2llc", "--dask", "local:2")
SHORT = ("--duration", "4")  # shorter, and the fairness checks on smt-2llc see too little
VERDICT_EXIT = {"pass": 0, "skip": 0, "fail": 1, "inconclusive": 2}


def parent(pid: int | str) -> int:
    """The parent of a running process (its stat's fourth field)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    """The running children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent(entry.name) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                pass  # it ended meanwhile
    return found


def alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


def results_list(runs: Path) -> str:
    """``ktstr results list`` on this runs directory."""
    env = dict(os.environ, KTSTR_RUNS_DIR=str(runs))
    proc = subprocess.run(
        [sys.executable, "-m", "ktstr.cli", "results", "list"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def start(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """The gauntlet client leading its own process group, its runs and temp files in tmp_path."""
    runs, scratch = tmp_path / "runs", tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, KTSTR_RUNS_DIR=str(runs), TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ktstr.cli", *GAUNTLET, *SHORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # A shell's background job ignores SIGINT, and Python keeps an ignored SIGINT: the
        # client gets a terminal's default, so Ctrl-C reaches it wherever the suite runs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return proc, runs, scratch


def test_three_presets_on_two_workers_land_three_records_and_a_killed_worker_is_replaced(
    tmp_path,
):
    proc, runs, scratch = start(tmp_path)
    qemu = wait_until(lambda: qemu_pids_for(str(scratch)), "a variant's QEMU", proc)[0]
    victim = parent(qemu)
    assert parent(victim) == proc.pid  # a worker process of the client's local cluster
    workers = children(proc.pid)
    os.kill(victim, signal.SIGKILL)
    out, err = finish(proc)
    for preset in ("tiny-1llc", "tiny-2llc", "smt-2llc"):
        assert f"steady[{preset}]: " in out, out + err
    records = sorted(runs.glob("*/record.json"))
    assert len(records) == 3, out + err
    listed = results_list(runs)
    histories, verdicts = [], []
    for path in records:
        record = json.loads(path.read_text())
        verdicts.append(record["verdict"])  # the checks' business; this test judges the transport
        assert record["host"]
        histories.append(record["distributed"]["attempts"])
        assert (path.parent / "console.log").stat().st_size > 0
        assert (path.parent / "channel.jsonl").stat().st_size > 0
        assert path.parent.name in listed
    assert proc.returncode == max(VERDICT_EXIT[v] for v in verdicts), out + err
    retried = [a for a in histories if len(a) > 1]
    assert len(retried) == 1, histories
    lost, done = retried[0]
    assert (lost["outcome"], done["outcome"]) == ("worker lost", "done")
    assert lost["worker"] != done["worker"]
    assert all([a["outcome"] for a in h] == ["done"] for h in histories if h is not retried[0])
    assert not qemu_pids_for(str(scratch))
    assert not [pid for pid in workers if alive(pid)]
    assert not list(scratch.iterdir())  # the cluster's scratch space is gone


def test_ctrl_c_keeps_every_finished_variant_and_leaves_no_process_behind(tmp_path):
    proc, runs, scratch = start(tmp_path)
    wait_until(lambda: list(runs.glob("*/record.json")), "the first record", proc)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = finish(proc)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    records = sorted(runs.glob("*/record.json"))
    assert 1 <= len(records) < 3
    for path in records:
        assert json.loads(path.read_text())["verdict"]
        assert (path.parent / "console.log").stat().st_size > 0
    listed = results_list(runs)
    assert all(path.parent.name in listed for path in records)
    assert not qemu_pids_for(str(scratch))
    assert not [pid for pid in workers if alive(pid)]
    assert not list(scratch.iterdir())


def test_a_users_scenario_file_and_include_files_travel_to_a_worker_process(tmp_path):
    """The worker is another process with its own view of the files: it runs what the client
    shipped, from its cache."""
    from ktstr import paths
    from ktstr.distributed import shipping

    user = Path(__file__).resolve().parents[1] / "data" / "user_scenarios.py"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "note.txt").write_text("shipped\n")
    runs = tmp_path / "runs"
    env = dict(os.environ, KTSTR_RUNS_DIR=str(runs), TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "ktstr.cli", "gauntlet", f"{user}::with_files"]
        + ["--presets", "tiny-1llc", "--dask", "local:1", "--include", str(tree)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "with_files[tiny-1llc]: " in proc.stdout, proc.stdout + proc.stderr
    (path,) = runs.glob("*-with_files-*/record.json")
    record = json.loads(path.read_text())
    assert record["distributed"]["attempts"][-1]["outcome"] == "done"
    packed = set(record["include_files"])  # what the worker packed into the guest
    assert {"/include-files/user_include.txt", "/include-files/tree/note.txt"} <= packed
    for host_path in (user, tree, user.parent / "user_include.txt"):
        shipment = shipping.pack(str(host_path))
        cached = paths.cache_dir() / "shipped" / shipping.digest(shipment) / host_path.name
        assert cached.exists(), cached
