"""The guest's op table, its handlers on a directory standing in for cgroupfs,
the worker pool and the fault undo list.

Processes a handler signals or pins are real (``sleep`` children); the
only fakes are the cgroupfs directory, the channel and, where an op
would panic or freeze the machine, the kernel file it writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ktstr import wire
from ktstr.guest import cgroups, faults, ops
from ktstr.guest.pool import Pool
from tests.helpers import wait_until

ALL_CPUS = "0-3"  # what the fake kernel says a cgroup without a cpuset gets
NO_SUCH_PID = 2**22 + 1  # above the kernel's PID_MAX_LIMIT: never a live process


class FakeChannel:
    """Records messages; encoding each proves it is a valid wire message."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, kind: str, **payload: object) -> None:
        self.sent.append(wire.decode(wire.encode(kind, **payload)))

    def events(self, ended: bool = False) -> list[dict]:
        """The events sent; with ``ended``, with when each op returned too."""
        drop = ("v", "kind", "t") + (() if ended else ("done_s",))
        return [
            {k: v for k, v in m.items() if k not in drop}
            for m in self.sent
            if m["kind"] == wire.EVENT
        ]


@pytest.fixture
def cgroupfs(tmp_path: Path, monkeypatch) -> Path:
    """A directory as the cgroup root, with the kernel's effective cpuset mirrored."""
    monkeypatch.setattr(cgroups, "CG_ROOT", str(tmp_path))
    monkeypatch.setattr(cgroups, "CG_BASE", str(tmp_path / "ktstr"))
    (tmp_path / "ktstr").mkdir()
    (tmp_path / "ktstr" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    real_read = cgroups.read

    def kernel_read(path: str) -> str:
        if path.endswith("/cpuset.cpus.effective"):
            requested = Path(path[: -len(".effective")])
            return (requested.read_text().strip() if requested.exists() else "") or ALL_CPUS
        return real_read(path)

    monkeypatch.setattr(cgroups, "read", kernel_read)
    return tmp_path / "ktstr"


@pytest.fixture
def ctx() -> ops.Context:
    return ops.Context(FakeChannel(), Pool(), [{"index": 0, "name": "vda", "mount": "/mnt/x"}])


@pytest.fixture
def sleepers():
    """Start ``sleep`` children; every one is killed and reaped afterwards."""
    started: list[subprocess.Popen] = []

    def start(n: int) -> list[subprocess.Popen]:
        procs = [subprocess.Popen(["sleep", "30"]) for _ in range(n)]
        started.extend(procs)
        return procs

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def state(pid: int) -> str:
    """A process's state letter from /proc (R, S, T, Z, ...)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def wait_state(pid: int, want: str) -> str:
    """The state once it is ``want`` (a signal's effect is asynchronous)."""
    return wait_until(lambda: state(pid) == want and want, f"pid {pid} in state {want}")


# --- the table --------------------------------------------------------------


def every_op_the_compiler_emits() -> set[str]:
    from ktstr import CgroupDef, CpusetSpec, Disk, HoldSpec, Op, Scenario, Step, Topology
    from ktstr.payloads.catalog import HACKBENCH
    from ktstr.scenario.plan import compile_plan

    setup = [
        Op.add_cgroup(CgroupDef("a", workers=2, cpuset=CpusetSpec.llc(0))),
        Op.add_cgroup(CgroupDef("b", workers=2, cpuset=CpusetSpec.llc(1))),
    ]
    changes = [
        Op.set_cpuset("a", CpusetSpec.llc(1)),
        Op.clear_cpuset("b"),
        Op.swap_cpusets("a", "b"),
        Op.set_weight("a", 300),
        Op.set_cpu_max("a", 50_000),
        Op.spawn_workers("a", 2),
        Op.stop_workers("a", 1),
        Op.set_affinity("b", CpusetSpec.llc(1)),
        Op.freeze("b"),
        Op.unfreeze("b"),
        Op.debug_stop_worker("a", 0, 100),
        Op.debug_freeze_fs(0, 100),
        Op.move_tasks("b", "a"),
        Op.remove_cgroup("b"),
        Op.fixture_knob("pile", 0),
        Op.run_payload("a", HACKBENCH),
        Op.wait_payload("hackbench"),
        Op.run_payload("a", HACKBENCH, name="again"),
        Op.kill_payload("again", "a"),
    ]
    scenario = Scenario(
        "all_ops",
        "every op once",
        [
            Step(setup, HoldSpec(seconds=1)),
            Step(changes, HoldSpec(seconds=1)),
            Step(
                [Op.set_cpuset("a", CpusetSpec.llc(0)), Op.debug_escape_cpuset("a", 0)],
                HoldSpec(seconds=1),
            ),
            Step([Op.debug_kernel_crash()], HoldSpec(seconds=1)),
        ],
        duration_s=4,
        disks=[Disk(fs="ext4")],
    )
    plan = compile_plan(scenario, Topology.parse("1n2l2c1t"))
    names = set()
    for step in plan["steps"]:
        for batch in [step["ops"]] + [r["ops"] for r in step["repeats"]]:
            names |= {op["op"] for op in batch}
    return names


def test_the_table_has_a_handler_for_every_op_the_host_emits_and_no_other():
    # "unfreeze" shares freeze's handler; the compiler's own ops map one to one.
    assert every_op_the_compiler_emits() == set(ops.OPS)


def test_apply_dispatches_by_name_and_stamps_when_the_op_began(ctx, monkeypatch):
    seen = []
    monkeypatch.setitem(ops.OPS, "set_weight", lambda c, op, gate: seen.append((op, gate)))
    op = {"op": "set_weight", "path": "a", "weight": 5}
    ctx.apply(op, 42)
    assert seen == [(op, 42)]
    assert ctx.op_began is None  # reset after the op


def test_an_unknown_op_is_refused_and_leaves_no_op_in_progress(ctx):
    with pytest.raises(ValueError, match="unknown op 'warp'"):
        ctx.apply({"op": "warp"})
    assert ctx.op_began is None and ctx.channel.sent == []


def test_a_failing_op_leaves_no_op_in_progress(ctx, monkeypatch):
    def boom(c, op, gate):
        raise OSError("EBUSY")

    monkeypatch.setitem(ops.OPS, "freeze", boom)
    with pytest.raises(OSError):
        ctx.apply({"op": "freeze", "path": "a"})
    assert ctx.op_began is None


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_events_carry_the_scenario_time_the_op_began(ctx, monkeypatch):
    clock = Clock(105.25)
    monkeypatch.setattr(ops, "time", clock)

    def slow(c, op, gate):
        clock.now += 2.0  # the write took two seconds ...
        c.event(op, weight=1)

    monkeypatch.setitem(ops.OPS, "set_weight", slow)
    ctx.t0 = 100.0
    ctx.apply({"op": "set_weight", "path": "a"})
    ctx.event({"op": "debug_thaw_fs"}, disk=0)  # outside an op: now
    assert ctx.channel.events(ended=True) == [
        # ... stamped at its start, and when it returned
        {"at_s": 5.25, "done_s": 7.25, "op": "set_weight", "path": "a", "weight": 1},
        {"at_s": 7.25, "done_s": 7.25, "op": "debug_thaw_fs", "path": None, "disk": 0},
    ]
    ctx.t0 = 0.0  # before the start, everything happens at 0
    ctx.event({"op": "add_cgroup", "path": "a"})
    assert ctx.channel.events()[-1]["at_s"] == 0.0


# --- the handlers on a fake cgroupfs ------------------------------------------


def test_add_cgroup_enables_controllers_and_writes_cpuset_and_weight(ctx, cgroupfs):
    ctx.apply({"op": "add_cgroup", "path": "a", "cpus": [0, 2], "weight": 200})
    assert (cgroupfs / "cgroup.subtree_control").read_text() == "+cpu +cpuset\n"
    assert (cgroupfs / "a" / "cpuset.cpus").read_text() == "0,2\n"
    assert (cgroupfs / "a" / "cpu.weight").read_text() == "200\n"
    assert ctx.channel.events() == [{"at_s": 0.0, "op": "add_cgroup", "path": "a", "cpus": [0, 2]}]


def test_add_cgroup_without_cpuset_or_weight_leaves_the_files_alone(ctx, cgroupfs):
    (cgroupfs / "cgroup.controllers").write_text("io memory\n")  # no cpu, no cpuset
    ctx.apply({"op": "add_cgroup", "path": "b", "cpus": None, "weight": 0})
    assert sorted(p.name for p in (cgroupfs / "b").iterdir()) == []
    assert not (cgroupfs / "cgroup.subtree_control").exists()
    assert ctx.channel.events()[0]["cpus"] == [0, 1, 2, 3]


def test_set_cpuset_none_clears_it_and_reports_what_the_kernel_gives(ctx, cgroupfs):
    (cgroupfs / "a").mkdir()
    ctx.apply({"op": "set_cpuset", "path": "a", "cpus": [1, 3]})
    assert (cgroupfs / "a" / "cpuset.cpus").read_text() == "1,3\n"
    ctx.apply({"op": "set_cpuset", "path": "a", "cpus": None})
    assert (cgroupfs / "a" / "cpuset.cpus").read_text() == "\n"  # an empty write still lands
    assert [e["cpus"] for e in ctx.channel.events()] == [[1, 3], [0, 1, 2, 3]]


def test_set_weight_and_freeze(ctx, cgroupfs):
    (cgroupfs / "a").mkdir()
    ctx.apply({"op": "set_weight", "path": "a", "weight": 50})
    assert (cgroupfs / "a" / "cpu.weight").read_text() == "50\n"
    ctx.apply({"op": "freeze", "path": "a"})
    assert (cgroupfs / "a" / "cgroup.freeze").read_text() == "1\n"
    ctx.apply({"op": "unfreeze", "path": "a"})
    assert (cgroupfs / "a" / "cgroup.freeze").read_text() == "0\n"
    assert ctx.channel.events() == [
        {"at_s": 0.0, "op": "set_weight", "path": "a", "weight": 50},
        {"at_s": 0.0, "op": "freeze", "path": "a"},
        {"at_s": 0.0, "op": "unfreeze", "path": "a"},
    ]


def test_move_tasks_writes_each_pid_and_follows_the_workers(ctx, cgroupfs, monkeypatch):
    for name in ("a", "b", "c"):
        (cgroupfs / name).mkdir()
    (cgroupfs / "a" / "cgroup.procs").write_text("11\n12\n")
    (cgroupfs / "b" / "cpuset.cpus").write_text("2-3\n")
    written = []
    monkeypatch.setattr(cgroups, "write", lambda path, value: written.append((path, value)))
    ctx.pool.add({0: 11, 1: 12}, "a")
    ctx.pool.add({2: 13}, "c")
    ctx.apply({"op": "move_tasks", "path": "a", "dst": "b"})
    procs = f"{cgroupfs}/b/cgroup.procs"
    assert written == [(procs, "11"), (procs, "12")]  # one task per write, as cgroupfs wants
    assert ctx.pool.path_of == {0: "b", 1: "b", 2: "c"}
    assert ctx.channel.events() == [
        {"at_s": 0.0, "op": "move_tasks", "path": "a", "dst": "b", "cpus": [2, 3]}
    ]


def test_remove_cgroup_removes_the_subtree_deepest_first(ctx, cgroupfs):
    (cgroupfs / "a" / "x" / "deep").mkdir(parents=True)
    (cgroupfs / "a" / "y").mkdir()
    (cgroupfs / "ab").mkdir()  # a sibling whose name starts the same
    ctx.apply({"op": "remove_cgroup", "path": "a"})
    assert sorted(p.name for p in cgroupfs.iterdir()) == ["ab", "cgroup.controllers"]
    assert ctx.channel.events() == [{"at_s": 0.0, "op": "remove_cgroup", "path": "a"}]


def test_remove_cgroup_stops_its_workers_first(ctx, cgroupfs, sleepers):
    (cgroupfs / "a" / "x").mkdir(parents=True)
    (cgroupfs / "b").mkdir()
    mine, other = sleepers(2), sleepers(1)
    ctx.pool.add({0: mine[0].pid}, "a")
    ctx.pool.add({1: mine[1].pid}, "a/x")
    ctx.pool.add({2: other[0].pid}, "b")
    ctx.apply({"op": "remove_cgroup", "path": "a"})
    assert ctx.pool.exited == {0, 1}  # reaped by the op itself, within its wait
    assert other[0].poll() is None
    assert not (cgroupfs / "a").exists()


def test_stop_workers_terminates_exactly_the_named_ids(ctx, sleepers):
    procs = sleepers(3)
    ctx.pool.add({i: p.pid for i, p in enumerate(procs)}, "a")
    ctx.apply({"op": "stop_workers", "path": "a", "n": 2, "ids": [2, 0]})
    assert procs[0].wait(5) == -signal.SIGTERM and procs[2].wait(5) == -signal.SIGTERM
    assert procs[1].poll() is None
    assert ctx.channel.events() == [{"at_s": 0.0, "op": "stop_workers", "path": "a", "ids": [2, 0]}]


def test_set_affinity_pins_live_members_and_skips_the_gone(ctx, sleepers):
    (live,) = sleepers(1)
    ctx.pool.add({0: live.pid, 1: NO_SUCH_PID}, "a")  # 1 exited but is not reaped yet
    ctx.apply({"op": "set_affinity", "path": "a", "cpus": [0]})
    assert os.sched_getaffinity(live.pid) == {0}
    assert ctx.channel.events() == [
        {"at_s": 0.0, "op": "set_affinity", "path": "a", "cpus": [0], "ids": [0, 1]}
    ]


def test_debug_stop_worker_stops_the_indexed_member_until_its_undo(ctx, sleepers):
    procs = sleepers(2)
    ctx.pool.add({5: procs[0].pid, 6: procs[1].pid}, "a")
    before = time.monotonic()
    ctx.apply({"op": "debug_stop_worker", "path": "a", "index": 1, "ms": 250})
    assert wait_state(procs[1].pid, "T") == "T" and state(procs[0].pid) != "T"
    (due,) = ctx.faults.due_times()
    assert before + 0.25 <= due <= time.monotonic() + 0.25
    ctx.faults.run_due(due - 0.001)  # not yet
    assert state(procs[1].pid) == "T"
    ctx.faults.run_due(due)
    assert wait_state(procs[1].pid, "S") == "S" and ctx.faults.undo == []
    assert ctx.channel.events() == [
        {"at_s": 0.0, "op": "debug_stop_worker", "path": "a", "worker": 6, "ms": 250}
    ]


def test_debug_escape_cpuset_moves_the_worker_to_the_root_and_off_its_cpus(ctx, cgroupfs, sleepers):
    (proc,) = sleepers(1)
    ctx.pool.add({3: proc.pid}, "a")
    ctx.apply({"op": "debug_escape_cpuset", "path": "a", "index": 0, "cpu": 1})
    assert (cgroupfs.parent / "cgroup.procs").read_text() == f"{proc.pid}\n"
    assert os.sched_getaffinity(proc.pid) == {1}
    assert ctx.channel.events() == [
        {"at_s": 0.0, "op": "debug_escape_cpuset", "path": "a", "worker": 3, "cpu": 1}
    ]


def test_debug_kernel_crash_reports_before_it_writes(ctx, tmp_path, monkeypatch):
    trigger = tmp_path / "sysrq-trigger"
    monkeypatch.setattr(faults, "SYSRQ_TRIGGER", str(trigger))
    sent_before_write = []
    real_write = cgroups.write

    def write(path: str, value: str) -> None:
        sent_before_write.append(len(ctx.channel.sent))
        real_write(path, value)

    monkeypatch.setattr(cgroups, "write", write)
    ctx.apply({"op": "debug_kernel_crash"})
    assert trigger.read_text() == "c\n" and sent_before_write == [1]


def test_debug_freeze_fs_refuses_a_hung_task_timeout_the_kernel_lacks(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(faults, "HUNG_TASK_TIMEOUT", str(tmp_path / "missing"))
    op = {"op": "debug_freeze_fs", "disk": 0, "ms": 100, "hung_task_timeout_s": 5}
    with pytest.raises(RuntimeError, match="no hung-task detector"):
        ctx.apply(op)
    assert ctx.faults.frozen == 0 and ctx.faults.undo == [] and ctx.channel.sent == []


# --- the fault undo list ------------------------------------------------------


def test_undo_actions_run_when_due_in_the_order_made(monkeypatch):
    clock = Clock(10.0)
    monkeypatch.setattr(faults, "time", clock)
    f = faults.Faults()
    ran = []
    f.later(500, lambda: ran.append("b"))
    f.later(100, lambda: ran.append("a"))
    f.later(100, lambda: ran.append("a2"))
    assert f.due_times() == [10.5, 10.1, 10.1]
    f.run_due(10.05)
    assert ran == []
    f.run_due(10.2)
    assert ran == ["a", "a2"] and f.due_times() == [10.5]
    f.run_due(11.0)
    assert ran == ["a", "a2", "b"] and f.undo == []


def test_undo_all_runs_everything_even_past_a_failure(capsys):
    f = faults.Faults()
    ran = []

    def broken() -> None:
        raise OSError("EINVAL")

    f.later(10_000, broken)
    f.later(20_000, lambda: ran.append("thawed"))
    f.undo_all()
    assert ran == ["thawed"] and f.undo == []
    assert "undoing a debug fault failed: EINVAL" in capsys.readouterr().out


# --- the pool -----------------------------------------------------------------


def test_pool_members_subtree_and_moves():
    pool = Pool()
    pool.add({0: 100, 1: 101}, "a")
    pool.add({2: 102}, "a/x")
    pool.add({3: 103}, "ab")
    pool.exited.add(1)
    assert pool.members("a") == [0]
    assert pool.subtree("a") == [0, 2]  # not "ab": a prefix of the name is not a child
    assert pool.live() == [0, 2, 3]
    pool.moved("a", "ab")
    assert pool.path_of == {0: "ab", 1: "a", 2: "a/x", 3: "ab"}  # an exited worker stays put
    assert pool.members("ab") == [0, 3]


def test_pool_reaps_exits_and_hands_the_schedulers_to_it(sleepers):
    worker, sched_proc = sleepers(2)

    class Sched:
        pid = sched_proc.pid
        statuses: list[int] = []

        def on_exit(self, status: int) -> None:
            self.statuses.append(status)

    sched = Sched()
    pool = Pool(sched)
    pool.add({7: worker.pid}, "a")
    pool.signal([7], signal.SIGKILL)
    os.kill(sched_proc.pid, signal.SIGTERM)
    pool.wait_for([7], 5.0)
    end = time.monotonic() + 5
    while not sched.statuses and time.monotonic() < end:
        pool.reap()
        time.sleep(0.01)
    assert pool.exited == {7}
    assert len(sched.statuses) == 1 and os.WTERMSIG(sched.statuses[0]) == signal.SIGTERM


def test_signalling_a_worker_that_is_gone_is_no_error():
    pool = Pool()
    pool.add({0: NO_SUCH_PID}, "a")
    pool.signal([0], signal.SIGTERM)
