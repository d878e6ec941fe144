"""The QMP monitor (QEMU's own client underneath) against a QEMU faked at the socket."""

import json
import socket
import threading
import time

from ktstr.vm.qmp import Monitor
from tests.helpers import HANG_GUARD_S, qmp_commands

GREETING = b'{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}'


def _qemu(sock, seen, refuse=(), shutdown=True):
    """Greets, negotiates, optionally reports a power-off, refuses some commands, quits."""
    sock.sendall(GREETING + b"\r\n")
    for cmd in qmp_commands(sock):
        seen.append(cmd["execute"])
        if cmd["execute"] == "qmp_capabilities":
            sock.sendall(b'{"return": {}}\r\n')
            if not shutdown:
                time.sleep(0.2)  # QEMU dies while the guest runs
                break
            sock.sendall(b'{"event": "SHUTDOWN", "data": {"reason": "guest-panic"}}\r\n')
        elif cmd["execute"] in refuse:
            err = {"class": "GenericError", "desc": "no"}
            sock.sendall(json.dumps({"error": err, "id": cmd["id"]}).encode() + b"\r\n")
        elif cmd["execute"] == "quit":
            break
    sock.close()


def _monitor(**kwargs):
    ours, theirs = socket.socketpair()
    seen: list[str] = []
    fake = threading.Thread(target=_qemu, args=(theirs, seen), kwargs=kwargs)
    fake.start()
    monitor = Monitor(ours)
    monitor.start()
    monitor.join(HANG_GUARD_S)
    fake.join(HANG_GUARD_S)
    assert not monitor.is_alive() and not fake.is_alive()
    return monitor, seen


def test_a_refused_query_still_quits_the_paused_qemu():
    monitor, seen = _monitor(refuse=("query-blockstats",))
    assert seen == ["qmp_capabilities", "query-blockstats", "quit"]
    assert monitor.quit_sent and not monitor.abandoned
    assert monitor.shutdown_reason == "guest-panic" and monitor.blockstats is None
    assert "QEMU refused query-blockstats: GenericError: no" in monitor.error


def test_qemu_gone_at_once_is_an_abandoned_monitor():
    ours, theirs = socket.socketpair()
    theirs.sendall(GREETING + b"\r\n")
    theirs.close()
    monitor = Monitor(ours)
    monitor.start()
    monitor.join(HANG_GUARD_S)
    assert monitor.abandoned and "closed the monitor before" in monitor.error


def test_qemu_gone_before_the_power_off_is_an_abandoned_monitor():
    monitor, seen = _monitor(shutdown=False)
    assert seen == ["qmp_capabilities"]
    assert monitor.abandoned and monitor.shutdown_reason is None
    assert "closed the monitor before the guest powered off" in monitor.error
