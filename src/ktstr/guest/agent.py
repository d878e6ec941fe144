"""The guest agent: /init hands over to it once busybox has set up PATH.

It mounts the pseudo filesystems, reports what the guest is to the host
over the virtio-serial channel, does the spec's work and powers the VM
off.  It must never exit into a kernel panic: every exception is
reported with its traceback, and power-off follows in all cases.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import time
import traceback
from typing import Any

from ktstr import wire
from ktstr.guest import system, topo
from ktstr.guest.channel import Channel, find_port


def console(message: str) -> None:
    print(f"ktstr-agent: {message}", flush=True)


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def load_spec() -> dict[str, Any]:
    try:
        with open(wire.SPEC_PATH) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"mode": "probe"}


def interactive_shell() -> None:
    """A shell on the console with job control, for ``ktstr shell``."""
    console("interactive shell; exit it to power the VM off")
    subprocess.call(["/bin/busybox", "setsid", "cttyhack", "/bin/sh", "-l"])


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


def run(channel: Channel, spec: dict[str, Any], mount_failures: list[str]) -> None:
    channel.send(
        wire.HELLO,
        release=platform.release(),
        uptime_s=_uptime(),
        python=platform.python_version(),
        mount_failures=mount_failures,
        cgroup_controllers=system.enable_controllers(),
    )
    channel.send(wire.TOPOLOGY, **topo.observed_topology())
    channel.send(wire.SCHED_EXT, **topo.sched_ext_state())
    mode = spec.get("mode", "probe")
    if mode == "shell":
        interactive_shell()
    elif mode in DEBUG_MODES:
        DEBUG_MODES[mode]()
    elif mode != "probe":
        raise ValueError(f"unknown agent mode {mode!r}")
    channel.send(wire.DONE, uptime_s=_uptime())


def main() -> None:
    started = time.monotonic()
    channel: Channel | None = None
    try:
        failures = system.mount_all()
        channel = Channel(find_port())
        run(channel, load_spec(), failures)
        console(f"done in {time.monotonic() - started:.2f} s")
    except BaseException as err:  # PID 1 must report and power off, whatever happened
        text = traceback.format_exc()
        console(f"agent failed: {err!r}\n{text}")
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.send(wire.ERROR, message=repr(err), traceback=text)
    finally:
        sys.stdout.flush()
        system.power_off()


if __name__ == "__main__":
    main()
