"""Execute a compiled scenario plan: the event loop.

The agent is single-threaded: one loop waits for the next due event
(a step, a loop repetition, a sample tick, the end of a fault, the end),
while the workers run as separate processes.  What an op does is in
``ops``; cgroupfs in ``cgroups``; forking in ``spawn``; faults in
``faults``; samples in ``sampling``.
"""

from __future__ import annotations

import os
import select
import signal
import time

from ktstr import wire
from ktstr.guest import cgroups, sampling, spawn, topo
from ktstr.guest.channel import Channel
from ktstr.guest.ops import Context
from ktstr.guest.pool import Pool
from ktstr.guest.sched import SchedulerProcess

START_DELAY_S = 0.3  # time for forked workers to reach the gate
STOP_GRACE_S = 3.0  # after the deadline, before SIGKILL
LAYOUT_KEYS = ("cpus", "numa_nodes", "llcs", "smt_siblings")


def check_layout(observed: dict, layout: dict) -> None:
    """Refuse to run a plan compiled for a topology other than the one the guest sees."""
    for key in LAYOUT_KEYS:
        if observed[key] != layout[key]:
            raise ValueError(
                f"the guest's {key} {observed[key]} differ from the plan's {layout[key]}"
            )


def schedule(steps: list[dict], t0: float) -> list[tuple[float, list]]:
    """Every round of ops after the start, as (monotonic time, ops), in time order.

    The plan lists loops unrolled into ``repeats``, so one index walks the
    rounds.  A first step at 0 s is applied before the start gate opens and
    is not listed, though its repeats are.  An endless sentinel ends the list.
    """
    rounds: list[tuple[float, list]] = []
    for i, step in enumerate(steps):
        if i or step["start_s"] != 0:
            rounds.append((t0 + step["start_s"], step["ops"]))
        rounds += [(t0 + r["at_s"], r["ops"]) for r in step["repeats"]]
    rounds.append((float("inf"), []))
    return rounds


class Runner(Context):
    """One scenario run: the ops' state (``Context``) plus the plan and the loop."""

    def __init__(self, channel: Channel, plan: dict, disks: list[dict] | None = None) -> None:
        if plan.get("plan_version") != wire.PLAN_VERSION:
            raise ValueError(
                f"plan version {plan.get('plan_version')!r}, this agent runs {wire.PLAN_VERSION}"
            )
        spec = plan.get("scheduler")
        self.sched = SchedulerProcess(channel, spec) if spec else None
        super().__init__(channel, Pool(self.sched), disks)
        self.plan = plan
        self.payloads.lib_path = plan.get("payload_lib_path", "")

    def run(self) -> None:
        try:
            self.run_plan()
        except BaseException:
            self.faults.undo_all()  # never leave a filesystem frozen or a worker stopped
            raise

    def sample(self, previous: dict) -> dict:
        return sampling.send_sample(
            self.channel,
            self.t0,
            previous,
            len(self.pool.live()),
            [d["name"] for d in self.disks.values()],
        )

    def run_plan(self) -> None:
        plan = self.plan
        check_layout(topo.observed_topology(), plan["layout"])
        self.channel.send(wire.CALIBRATION, loop_s=wire.calibrate(), loops=wire.CALIBRATION_LOOPS)
        if self.sched and not self.sched.start(time.monotonic()):
            self.channel.send(wire.SCENARIO_END, at_s=0.0, skipped="the scheduler did not attach")
            return
        os.makedirs(spawn.RESULTS, exist_ok=True)
        os.makedirs(cgroups.CG_BASE, exist_ok=True)
        cgroups.enable_children(cgroups.CG_ROOT)
        gate_r, self.gate_w = os.pipe()
        self.t0 = time.monotonic() + START_DELAY_S
        self.deadline = self.t0 + plan["duration_s"]
        steps = plan["steps"]
        self.payloads.t0 = self.t0
        first = steps[0]["ops"] if steps and steps[0]["start_s"] == 0 else []
        pending = self.apply_ops(first, gate_r)  # ops a wait_payload holds back
        os.close(gate_r)
        while time.monotonic() < self.t0:
            time.sleep(0.005)
        os.close(self.gate_w)  # every worker of the first step starts now
        self.gate_w = -1
        # When the gate really opened: spawning may take longer than START_DELAY_S.
        opened = round(max(0.0, time.monotonic() - self.t0), 6)
        self.channel.send(wire.EVENT, at_s=opened, op="start", path=None)
        rounds = schedule(steps, self.t0)  # samples keep their own clock
        next_round = 0
        interval = plan["sample_interval_s"]
        next_sample = self.t0 + interval
        last_sample = self.sample({})
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                break
            self.faults.run_due(now)
            held = self.payloads.is_running(self.waiting_for)
            if pending and not held:
                pending = self.apply_ops(pending)
                continue
            due = float("inf") if held or pending else rounds[next_round][0]
            when = min(due, next_sample)
            if now < when:
                wake = min([when, self.deadline] + self.faults.due_times())
                self.wait(max(0.0, wake - now))
                self.pool.reap()
                continue
            if due <= now:
                pending = self.apply_ops(rounds[next_round][1])
                next_round += 1
            else:
                last_sample = self.sample(last_sample)
                next_sample += interval
        self.finish()

    def apply_ops(self, ops: list[dict], gate_fd: int = -1) -> list[dict]:
        """Apply ops in order up to a wait_payload whose payloads still run; the rest."""
        for i, op in enumerate(ops):
            self.apply(op, gate_fd)
            if op["op"] == "wait_payload" and self.payloads.is_running(self.waiting_for):
                return ops[i + 1 :]
        return []

    def wait(self, seconds: float) -> None:
        """Sleep, but wake for the scheduler's and payloads' output as it comes."""
        payloads = self.payloads.running
        if not self.sched and not payloads:
            time.sleep(seconds)
            return
        fds = (self.sched.fds() if self.sched else []) + self.payloads.fds()
        # sysfs state changes and a payload's exit cannot be waited on here: poll them
        timeout = min(seconds, 0.1)
        ready: list[int] = []
        if fds:
            ready = select.select(fds, [], [], timeout)[0]
        else:
            time.sleep(timeout)
        if payloads:
            self.payloads.drain(ready)
            self.payloads.reap()
        if self.sched:
            self.sched.poll()

    def finish(self) -> None:
        """End the faults, thaw, let workers finish (then kill), send their results."""
        self.faults.undo_all()
        pool = self.pool
        for path in set(pool.path_of.values()):
            try:
                cgroups.set_frozen(path, False)
            except OSError:
                pass  # removed, or never frozen
            cgroups.lift_quotas(path)  # the run is over: let throttled workers write results
        self.payloads.stop_all(self.plan.get("stop_grace_s", STOP_GRACE_S))
        pool.wait_for(
            pool.live(),
            self.plan.get("stop_grace_s", STOP_GRACE_S),
            while_exiting_s=self.plan.get("exit_patience_s", 0.0),
        )
        stragglers = pool.live()
        pool.signal(stragglers, signal.SIGKILL)
        pool.wait_for(stragglers, 2.0)
        for wid in sorted(pool.pids):
            try:
                with open(spawn.result_path(wid)) as f:
                    data = wire.loads(f.read())
            except (OSError, ValueError):
                data = {"id": wid, "error": "no result (killed or crashed)"}
            data["cgroup_path"] = pool.path_of[wid]
            data["killed"] = wid in stragglers
            self.channel.send(wire.WORKER, **data)
        if self.sched:
            self.sched.stop()
        self.channel.send(wire.SCENARIO_END, at_s=round(time.monotonic() - self.t0, 6))
