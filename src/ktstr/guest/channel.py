"""The guest end of the virtio-serial channel to the host."""

from __future__ import annotations

import os
import time

from ktstr import wire

_PORTS = "/sys/class/virtio-ports"


def find_port(name: str = wire.PORT_NAME, wait_s: float = 10.0) -> str:
    """Device path of the named virtio-serial port, waiting for it to appear."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            for port in os.listdir(_PORTS):
                with open(f"{_PORTS}/{port}/name") as f:
                    if f.read().strip() == name and os.path.exists(f"/dev/{port}"):
                        return f"/dev/{port}"
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"virtio-serial port {name} did not appear in {wait_s:.0f} s")
        time.sleep(0.02)


class Channel:
    """Write-only JSON-lines channel; each message is flushed at once."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY)

    def send(self, kind: str, **payload: object) -> None:
        data = wire.encode(kind, **payload)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        os.close(self._fd)
