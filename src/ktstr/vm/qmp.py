"""A QMP monitor for VMs with disks: block counters at the moment the guest powers off.

QEMU runs with ``-no-shutdown``, so a guest power-off pauses the VM
instead of ending QEMU; the monitor then asks ``query-blockstats`` (the
device counters are complete: the guest has flushed and stopped) and
tells QEMU to quit.  The monitor talks over one end of a socketpair, as
the guest channel does, so there is no socket file to leave behind.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any

log = logging.getLogger(__name__)

# query-blockstats fields kept per disk (QEMU names).
STAT_FIELDS = (
    "rd_operations",
    "wr_operations",
    "flush_operations",
    "rd_bytes",
    "wr_bytes",
    "failed_rd_operations",
    "failed_wr_operations",
    "failed_flush_operations",
    "invalid_rd_operations",
    "invalid_wr_operations",
    "invalid_flush_operations",
    "rd_total_time_ns",
    "wr_total_time_ns",
    "flush_total_time_ns",
    "wr_highest_offset",
)


class QmpError(RuntimeError):
    pass


class Monitor(threading.Thread):
    """Negotiates QMP, waits for the guest's SHUTDOWN, reads block stats, quits QEMU."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True, name="ktstr-qmp")
        self.sock = sock
        self.stream = sock.makefile("rwb")
        self.blockstats: dict[str, dict[str, int]] | None = None
        self.shutdown_reason: str | None = None
        self.error: str | None = None
        self.quit_sent = False
        self._next_id = 0

    @property
    def abandoned(self) -> bool:
        """Gone without telling QEMU to quit: a paused QEMU must be ended by other means."""
        return not self.is_alive() and not self.quit_sent

    def _read(self) -> dict[str, Any]:
        line = self.stream.readline()
        if not line:
            raise EOFError("QEMU closed the monitor")
        return json.loads(line)

    def command(self, name: str, **arguments: Any) -> Any:
        """Send one command and return its result; events read meanwhile are ignored."""
        self._next_id += 1
        msg: dict[str, Any] = {"execute": name, "id": self._next_id}
        if arguments:
            msg["arguments"] = arguments
        self.stream.write(json.dumps(msg).encode() + b"\n")
        self.stream.flush()
        while True:
            reply = self._read()
            if reply.get("id") != self._next_id:
                continue
            if "error" in reply:
                raise QmpError(f"{name}: {reply['error'].get('desc')}")
            return reply.get("return")

    def run(self) -> None:
        try:
            self._read()  # greeting
            self.command("qmp_capabilities")
            while True:
                msg = self._read()
                if msg.get("event") == "SHUTDOWN":
                    self.shutdown_reason = (msg.get("data") or {}).get("reason")
                    try:
                        self.blockstats = parse_blockstats(self.command("query-blockstats"))
                    finally:  # a paused QEMU must end even if the query failed
                        self.stream.write(b'{"execute": "quit"}\n')
                        self.stream.flush()
                        self.quit_sent = True
                    return
        except Exception as err:  # reported, never a thread traceback; lifecycle ends QEMU
            self.error = f"{type(err).__name__}: {err}"
            log.debug("QMP monitor ended: %s", self.error)
        finally:
            try:
                self.stream.close()
            except OSError:
                pass


def parse_blockstats(reply: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """query-blockstats' reply -> {drive id: {field: value}} for the fields ktstr keeps."""
    out = {}
    for entry in reply or []:
        name = entry.get("device") or entry.get("qdev") or entry.get("node-name")
        stats = entry.get("stats", {})
        out[name] = {k: stats[k] for k in STAT_FIELDS if k in stats}
    return out
