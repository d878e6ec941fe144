"""Group wiring: what each worker of a pair or group shares, and which pipe ends it keeps."""

from __future__ import annotations

import os

import pytest

from ktstr.guest import ioworkers, spawn


def spawn_op(kind: str, ids: list[int], **params: object) -> dict:
    return {"op": "spawn", "path": "cg_0", "ids": ids, "work": {"kind": kind, "params": params}}


@pytest.fixture
def wired():
    """``groups`` with every fd it makes closed afterwards (and counted as real)."""
    made: list[int] = []

    def wire(op: dict, disks: dict | None = None) -> tuple[list[dict], list[int]]:
        members, fds = spawn.groups(op, disks or {})
        made.extend(fds)
        return members, fds

    yield wire
    for fd in made:
        os.close(fd)  # raises if groups listed an fd that is not open


@pytest.mark.parametrize(
    ("kind", "params", "size"),
    [
        ("spin", {}, 1),
        ("bursty", {"burst_ms": 5, "sleep_ms": 5}, 1),
        ("pipe_pingpong", {}, 2),
        ("futex_pingpong", {}, 2),
        ("fan_out", {"n": 3}, 4),
        ("mutex_contention", {"n": 3}, 3),
    ],
)
def test_group_size(kind, params, size):
    assert spawn.group_size(kind, params) == size


def test_lone_workers_share_nothing(wired):
    members, fds = wired(spawn_op("spin", [4, 5, 6]))
    assert members == [{"rank": 0}] * 3 and fds == []


def test_pipe_pingpong_partners_read_their_own_pipe_and_write_the_others(wired):
    members, fds = wired(spawn_op("pipe_pingpong", [0, 1, 2, 3]))
    assert [m["rank"] for m in members] == [0, 1, 0, 1]
    assert len(fds) == 8 and len(set(fds)) == 8  # two pipes per pair
    a, b, c, d = members
    assert a["pipes"] is b["pipes"] and c["pipes"] is d["pipes"]
    assert not set(sum(a["pipes"], ())) & set(sum(c["pipes"], ()))  # pairs are apart
    pipes = a["pipes"]
    assert a["keep"] == {pipes[0][0], pipes[1][1]}
    assert b["keep"] == {pipes[1][0], pipes[0][1]}
    # Between them the partners hold each end once, so when one exits the
    # other's read sees EOF (no stray write end left open in it).
    assert a["keep"] | b["keep"] == set(sum(pipes, ())) and not a["keep"] & b["keep"]
    os.write(pipes[1][1], b"x")  # a writes to b's pipe ...
    assert os.read(pipes[1][0], 1) == b"x"  # ... and b reads it


def test_fan_out_producer_writes_every_consumer_and_each_consumer_reads_its_own(wired):
    members, fds = wired(spawn_op("fan_out", [10, 11, 12], n=2))
    assert [m["rank"] for m in members] == [0, 1, 2]
    pipes = members[0]["pipes"]
    assert len(pipes) == 3 and len(fds) == 6
    assert members[0]["keep"] == {pipes[1][1], pipes[2][1]}
    assert members[1]["keep"] == {pipes[1][0]}
    assert members[2]["keep"] == {pipes[2][0]}
    # Nobody uses the producer's own pipe (rank 0's slot): it is closed in every worker.
    kept = set().union(*(m["keep"] for m in members))
    assert not kept & set(pipes[0])


def test_futex_pairs_share_one_page_each(wired):
    members, fds = wired(spawn_op("futex_pingpong", [0, 1, 2, 3]))
    assert fds == []
    assert members[0]["shm"] is members[1]["shm"]
    assert members[2]["shm"] is members[3]["shm"]
    assert members[0]["shm"] is not members[2]["shm"]
    members[0]["shm"][0] = 7
    assert members[1]["shm"][0] == 7 and members[2]["shm"][0] == 0
    for m in members[::2]:
        m["shm"].close()


def test_mutex_groups_share_a_lock_named_by_their_first_worker(wired):
    members, fds = wired(spawn_op("mutex_contention", [3, 4, 5, 6, 7, 8], n=3))
    assert fds == []
    assert [m["lock_path"] for m in members] == ["/tmp/ktstr-lock-3"] * 3 + [
        "/tmp/ktstr-lock-6"
    ] * 3
    assert [m["rank"] for m in members] == [0, 1, 2, 0, 1, 2]


def test_disk_workers_split_the_device_into_slots(wired):
    kind = sorted(ioworkers.KINDS)[0]
    disks = {1: {"index": 1, "device": "/dev/vdb", "sectors": 4096, "name": "vdb"}}
    members, fds = wired(spawn_op(kind, [0, 1, 2], disk=1), disks)
    assert fds == []
    assert [(m["device"], m["sectors"], m["slot"], m["slots"]) for m in members] == [
        ("/dev/vdb", 4096, 0, 3),
        ("/dev/vdb", 4096, 1, 3),
        ("/dev/vdb", 4096, 2, 3),
    ]


def test_every_policy_but_normal_has_its_kernel_constant():
    from ktstr.scenario.model import RR, Fifo, Policy

    assert set(spawn.POLICIES) == {"batch", "idle", "fifo", "rr", "ext"}
    assert spawn.POLICIES["ext"] == 7  # SCHED_EXT; deadline goes through sched_setattr
    assert spawn.POLICIES["fifo"] == os.SCHED_FIFO and spawn.POLICIES["rr"] == os.SCHED_RR
    # The names the host puts in a spawn op are the ones the guest knows.
    assert Fifo(1).name in spawn.POLICIES and RR(1).name in spawn.POLICIES
    assert Policy().name == "normal"


def test_results_are_named_by_worker_id():
    assert spawn.result_path(12) == f"{spawn.RESULTS}/12.json"
