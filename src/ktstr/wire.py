"""The wire schema: the only module both the host and the guest import.

Every message is one JSON object on one line, with the schema version
``v``, a ``kind`` and the guest's monotonic time ``t`` in seconds.  Keep
this module stdlib-only: it runs inside the VM.
"""

from __future__ import annotations

import json
import time
from typing import Any

VERSION = 1
# Name of the virtio-serial port the guest agent talks on.
PORT_NAME = "org.ktstr.0"
# Where the per-run spec lands inside the guest.
SPEC_PATH = "/ktstr/spec.json"

# Message kinds, guest -> host.
HELLO = "hello"  # agent is up: kernel release, uptime, python version
TOPOLOGY = "topology"  # what the guest really sees
SCHED_EXT = "sched_ext"  # sched_ext presence and state
ERROR = "error"  # agent exception: message + traceback
DONE = "done"  # agent finished its work; power-off follows

KINDS = frozenset({HELLO, TOPOLOGY, SCHED_EXT, ERROR, DONE})


class WireError(ValueError):
    """A line that is not a valid message of this schema version."""


def encode(kind: str, **payload: Any) -> bytes:
    """One message as a newline-terminated JSON line."""
    if kind not in KINDS:
        raise WireError(f"unknown message kind {kind!r}")
    msg = {"v": VERSION, "kind": kind, "t": round(time.monotonic(), 6), **payload}
    return (json.dumps(msg, sort_keys=True, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line; refuse other versions and unknown kinds."""
    try:
        msg = json.loads(line)
    except ValueError as err:
        raise WireError(f"not JSON: {err}") from None
    if not isinstance(msg, dict):
        raise WireError("message is not an object")
    if msg.get("v") != VERSION:
        raise WireError(f"schema version {msg.get('v')!r}, expected {VERSION}")
    if msg.get("kind") not in KINDS:
        raise WireError(f"unknown message kind {msg.get('kind')!r}")
    return msg
