"""A QMP monitor for VMs with disks: block counters at the moment the guest powers off.

QEMU runs with ``-no-shutdown``, so a guest power-off pauses the VM
instead of ending QEMU; the monitor then asks ``query-blockstats`` (the
device counters are complete: the guest has flushed and stopped) and
tells QEMU to quit.  The monitor talks over one end of a socketpair, as
the guest channel does, so there is no socket file to leave behind.

The protocol itself (greeting, capabilities negotiation, command ids,
events) is QEMU's own client, ``qemu.qmp``, run on an asyncio loop in
the monitor's thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from ktstr.errors import VmError

log = logging.getLogger(__name__)
# qemu.qmp logs a lost connection at ERROR; for ktstr that is an ordinary end
# (QEMU exits, or dies and lifecycle reports why), so it is debug output only.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

COMMAND_TIMEOUT_S = 30.0  # a paused QEMU answers query-blockstats at once
CONNECT_TIMEOUT_S = 60.0  # QEMU greets as soon as it has parsed its argv

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


class QmpError(VmError):
    """QEMU's monitor refused a command, did not answer in time, or went away."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause, "see qemu.stderr.log in the run directory")


class Monitor(threading.Thread):
    """Negotiates QMP, waits for the guest's SHUTDOWN, reads block stats, quits QEMU."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True, name="ktstr-qmp")
        self.sock = sock
        self.blockstats: dict[str, dict[str, int]] | None = None
        self.shutdown_reason: str | None = None
        self.error: str | None = None
        self.quit_sent = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._connected = threading.Event()

    @property
    def abandoned(self) -> bool:
        """Gone without telling QEMU to quit: a paused QEMU must be ended by other means."""
        return not self.is_alive() and not self.quit_sent

    def run(self) -> None:
        try:
            asyncio.run(self._session())
        except Exception as err:  # reported, never a thread traceback; lifecycle ends QEMU
            self.error = f"{type(err).__name__}: {err}"
            log.debug("QMP monitor ended: %s", self.error)

    async def _session(self) -> None:
        from qemu.qmp import ExecInterruptedError, QMPClient

        client = QMPClient("ktstr")
        try:
            try:
                await asyncio.wait_for(client.connect(self.sock), CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise QmpError(
                    f"QEMU did not greet on its monitor in {CONNECT_TIMEOUT_S:.0f} s"
                ) from None
            except Exception as err:  # QMPError, EOF, OSError; a hang-up mid-connect asserts
                raise QmpError(
                    f"QEMU closed the monitor before the guest powered off: {err!r}"
                ) from None
            self._loop, self._client = asyncio.get_running_loop(), client
            self._connected.set()
            event = await _shutdown_event(client)
            self.shutdown_reason = (event.get("data") or {}).get("reason")
            try:
                reply = await _execute(client, "query-blockstats")
                self.blockstats = parse_blockstats(reply)
            finally:  # a paused QEMU must end even if the query failed
                try:
                    await _execute(client, "quit")
                except ExecInterruptedError:
                    pass  # QEMU closed the monitor as it quit, before its reply
                self.quit_sent = True
        finally:
            self._client = None
            try:
                await client.disconnect()
            except Exception as err:  # what ended the connection; an EOF after quit is normal
                log.debug("QMP connection ended: %s: %s", type(err).__name__, err)

    def command(self, name: str, timeout_s: float = 5.0) -> Any:
        """Run one QMP command from another thread (the host monitor pauses the VM with
        ``stop`` and ``cont``) while this thread waits for the guest's power-off."""
        if not self._connected.wait(timeout_s) or self._client is None or self._loop is None:
            raise QmpError(f"QEMU's monitor is not connected, so {name} was not sent")
        future = asyncio.run_coroutine_threadsafe(_execute(self._client, name), self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise QmpError(f"QEMU did not answer {name} in {timeout_s:.0f} s") from None


async def _execute(client: Any, name: str) -> Any:
    """One command, with a timeout; QMP errors become :class:`QmpError`."""
    from qemu.qmp import ExecuteError

    try:
        return await asyncio.wait_for(client.execute(name), COMMAND_TIMEOUT_S)
    except ExecuteError as err:
        raise QmpError(f"QEMU refused {name}: {err.error_class}: {err}") from None
    except TimeoutError:
        raise QmpError(f"QEMU did not answer {name} in {COMMAND_TIMEOUT_S:.0f} s") from None


async def _shutdown_event(client: Any) -> dict[str, Any]:
    """The SHUTDOWN event, or QmpError once QEMU closes the monitor without sending one."""
    from qemu.qmp import Runstate

    async def shutdown() -> dict[str, Any]:
        async for event in client.events:
            if event["event"] == "SHUTDOWN":
                return dict(event)
        raise AssertionError("unreachable: the event stream does not end")

    async def lost() -> None:
        while client.runstate == Runstate.RUNNING:
            await client.runstate_changed()

    waiters = [asyncio.ensure_future(shutdown()), asyncio.ensure_future(lost())]
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if waiters[0] in done:
        return waiters[0].result()
    raise QmpError("QEMU closed the monitor before the guest powered off")


def parse_blockstats(reply: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """query-blockstats' reply -> {drive id: {field: value}} for the fields ktstr keeps."""
    out = {}
    for entry in reply or []:
        name = entry.get("device") or entry.get("qdev") or entry.get("node-name")
        stats = entry.get("stats", {})
        out[name] = {k: stats[k] for k in STAT_FIELDS if k in stats}
    return out
