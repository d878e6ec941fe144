"""The guest agent: /init hands over to it once busybox has set up PATH.

It mounts the pseudo filesystems, reports what the guest is to the host
over the virtio-serial channel, does the spec's work and powers the VM
off.  It must never exit into a kernel panic: every exception is
reported with its traceback, and power-off follows in all cases.
"""

from __future__ import annotations

import os
import sys
import time

from ktstr import wire
from ktstr.guest import disks, system, topo
from ktstr.guest.channel import Channel, find_port


def console(message: str) -> None:
    print(f"ktstr-agent: {message}", flush=True)


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def watch_from_above() -> None:
    """Run the agent in the real-time class, above the scheduler under test.

    RT tasks are not scheduled by a sched_ext scheduler, so a scheduler that
    stalls tasks cannot stall the agent that reports it; the agent sleeps
    almost always, so the workload hardly notices.  RESET_ON_FORK gives
    every worker and the scheduler process the normal policy back.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(50))
    except OSError as err:
        console(f"could not make the agent real-time: {err}")


def _cmdline() -> str:
    with open("/proc/cmdline") as f:
        return f.read().strip()


def load_spec() -> dict[str, object]:
    try:
        with open(wire.SPEC_PATH) as f:
            spec = wire.loads(f.read())
    except FileNotFoundError:
        return {"mode": "probe"}
    if not isinstance(spec, dict):
        raise ValueError(f"{wire.SPEC_PATH} is not a JSON object")
    return spec


def _fail() -> None:
    raise RuntimeError("failure requested by the spec (debug mode 'fail')")


def _panic() -> None:
    with open("/proc/sysrq-trigger", "w") as f:
        f.write("c")


def _hang() -> None:
    while True:
        time.sleep(3600)


# Deliberate failures, so the host's handling of each VM ending can be tested for real.
DEBUG_MODES = {"fail": _fail, "panic": _panic, "hang": _hang}


def run(channel: Channel, spec: dict[str, object], mount_failures: list[str]) -> None:
    channel.send(
        wire.HELLO,
        release=os.uname().release,
        cmdline=_cmdline(),
        uptime_s=_uptime(),
        python=sys.version.split()[0],
        mount_failures=mount_failures,
        boot_marks=topo.boot_marks(),
        agent_start_uptime_s=AGENT_START_UPTIME,
        cgroup_controllers=system.enable_controllers(),
    )
    channel.send(wire.TOPOLOGY, **topo.observed_topology())
    channel.send(wire.SCHED_EXT, **topo.sched_ext_state())
    devices = disks.setup(spec)
    if devices:
        channel.send(wire.DISKS, disks=devices)
    mode = spec.get("mode", "probe")
    if mode in ("shell", "exec"):
        from ktstr.guest.execmode import session  # lazy, as the scenario runner below

        session(channel, spec)
    elif mode == "scenario":
        # Lazy: workers, the scheduler runner and their imports cost a probe or a
        # shell about a tenth of a second under emulation (LAZY_IMPORTS packs them).
        from ktstr.guest.scenario import Runner

        Runner(channel, spec, devices).run()
    elif mode in DEBUG_MODES:
        DEBUG_MODES[mode]()
    elif mode != "probe":
        raise ValueError(f"unknown agent mode {mode!r}")
    if devices:
        channel.send(wire.DISK_STATS, disks=disks.final_stats(devices))
    channel.send(wire.DONE, uptime_s=_uptime())


AGENT_START_UPTIME = 0.0


def main() -> None:
    global AGENT_START_UPTIME
    started = time.monotonic()
    channel: Channel | None = None
    try:
        failures = system.mount_all()
        AGENT_START_UPTIME = _uptime()
        watch_from_above()
        channel = Channel(find_port())
        run(channel, load_spec(), failures)
        console(f"done in {time.monotonic() - started:.2f} s")
    except BaseException as err:  # PID 1 must report and power off, whatever happened
        import traceback  # lazy: only failures pay for it; LAZY_IMPORTS packs it

        text = traceback.format_exc()
        console(f"agent failed: {err!r}\n{text}")
        if channel is not None:
            try:
                channel.send(wire.ERROR, message=repr(err), traceback=text)
            except OSError:
                console("could not report the failure over the channel")
    finally:
        sys.stdout.flush()
        system.power_off()


if __name__ == "__main__":
    main()
