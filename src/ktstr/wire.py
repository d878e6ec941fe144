"""The wire schema: the only module both the host and the guest import.

Every message is one JSON object on one line, with the schema version
``v``, a ``kind`` and the guest's monotonic time ``t`` in seconds.  Keep
this module stdlib-only: it runs inside the VM.
"""

from __future__ import annotations

import time

try:  # the C half of the json module: see _dumps/_loads
    import _json
except ImportError:  # pragma: no cover - every CPython build has it
    _json = None

VERSION = 1
# The scenario plan's shape; 2: loops unrolled into repeats, stop_workers names its ids.
# 3: a worker's policy carries deadline parameters; the fixture_knob op.
PLAN_VERSION = 3
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
# Scenario runs.
CALIBRATION = "calibration"  # seconds a fixed CPU loop took in the guest
EVENT = "event"  # an op applied (or the start), at scenario time at_s
SAMPLE = "sample"  # per-CPU utilization and schedstat at a fixed interval
WORKER = "worker"  # one worker's result at the end
SCENARIO_END = "scenario_end"
# The scheduler under test.
SCHED = "sched"  # lifecycle: started, attached, attach_failed, state, exited, stopped
SCHED_OUTPUT = "sched_out"  # one line of the scheduler's stdout/stderr
KMSG = "kmsg"  # one kernel log record, from the scheduler's start on
# Disks.
DISKS = "disks"  # each declared disk as the guest sees it, with its counters at the start
DISK_STATS = "disk_stats"  # each disk's /sys/block counters at the end
# ``ktstr shell --exec``.
EXEC_OUTPUT = "exec_out"  # a chunk of the command's stdout or stderr, as it comes
EXEC_END = "exec_end"  # the command's exit status, or that it ran out of time
# Payloads (programs run in a scenario's cgroups).
PAYLOAD_OUTPUT = "payload_out"  # a chunk of a payload's stdout or stderr, as it comes
PAYLOAD_END = "payload_end"  # how a payload ended: exit code or signal, who stopped it

VERIFIER = "verifier"  # each BPF program load the scheduler made, with the verifier's log

KINDS = frozenset(
    {
        HELLO,
        TOPOLOGY,
        SCHED_EXT,
        ERROR,
        DONE,
        CALIBRATION,
        EVENT,
        SAMPLE,
        WORKER,
        SCENARIO_END,
        SCHED,
        SCHED_OUTPUT,
        KMSG,
        DISKS,
        DISK_STATS,
        EXEC_OUTPUT,
        EXEC_END,
        PAYLOAD_OUTPUT,
        PAYLOAD_END,
        VERIFIER,
    }
)

# What I/O workers write: every 512-byte sector starts with its byte offset on the
# disk and a tag, then a fixed fill, so the host can check any sector of a backing file.
IO_PATTERN_TAG = b"ktstr-io"
_FILL = bytes(range(256))[16:] + bytes(range(256))


def io_pattern(offset: int, size: int) -> bytes:
    """The bytes a pattern-writing worker puts at ``offset`` (both sector-aligned)."""
    return b"".join(
        (offset + i).to_bytes(8, "little") + IO_PATTERN_TAG + _FILL for i in range(0, size, 512)
    )


# The CPU calibration loop: the guest times it and reports CALIBRATION, the host
# times the same loop, and their ratio is the run's dilation.  It lives here so
# both sides run the very same code.
CALIBRATION_LOOPS = 200_000


def calibrate(loops: int = CALIBRATION_LOOPS) -> float:
    """Seconds a fixed empty loop takes: the same code on both sides gives a dilation."""
    started = time.perf_counter()
    for _ in range(loops):
        pass
    return time.perf_counter() - started


class WireError(ValueError):
    """A line that is not a valid message of this schema version."""


# Importing ``json`` pulls in ``re`` and ``enum``: about 0.2 s of a TCG
# boot, a tenth of it.  The guest only needs compact encoding and plain
# decoding, which the C accelerator ``json`` itself uses does alone.


def _no_default(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _bad_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_bad_constant)


if _json is not None:
    _encode = _json.make_encoder(
        {}, _no_default, _json.encode_basestring_ascii, None, ":", ",", True, False, False
    )
    _scan = _json.make_scanner(_ScanContext())


def dumps(obj: object) -> str:
    """Compact JSON with sorted keys; NaN and infinities are refused."""
    if _json is None:
        import json

        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "".join(_encode(obj, 0))


def loads(text: str) -> object:
    """Parse one JSON document."""
    if _json is None:
        import json

        return json.loads(text)
    text = text.strip()
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("expecting a JSON value at the start") from None
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return obj


def encode(kind: str, **payload: object) -> bytes:
    """One message as a newline-terminated JSON line."""
    if kind not in KINDS:
        raise WireError(f"unknown message kind {kind!r}")
    msg = {"v": VERSION, "kind": kind, "t": round(time.monotonic(), 6), **payload}
    return (dumps(msg) + "\n").encode()


def _shown(value: object) -> str:
    """A guest value in an error message: repr (escapes control characters), bounded."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode(line: bytes | str) -> dict[str, object]:
    """Parse one line; refuse other versions and unknown kinds.

    Any failure is a WireError, whatever the line holds: invalid UTF-8,
    JSON nested deeper than the parser recurses (RecursionError), numbers
    with too many digits, and whatever else the parser may raise.  The
    host reads untrusted guest lines with it, so it must never raise
    anything else.
    """
    try:
        if isinstance(line, bytes):
            line = line.decode()  # the guest encodes ASCII only: anything else is corrupt
        msg = loads(line)
    except UnicodeDecodeError as err:
        raise WireError(f"not UTF-8: byte {err.start} is invalid") from None
    except ValueError as err:
        raise WireError(f"not JSON: {err}") from None
    except RecursionError:
        raise WireError("not JSON: nested too deeply to parse") from None
    except Exception as err:  # noqa: BLE001 - the line is untrusted; any parser failure is its fault
        raise WireError(f"not JSON: {type(err).__name__}") from None
    if not isinstance(msg, dict):
        raise WireError("message is not an object")
    if msg.get("v") != VERSION:
        raise WireError(f"schema version {_shown(msg.get('v'))}, expected {VERSION}")
    if msg.get("kind") not in KINDS:
        raise WireError(f"unknown message kind {_shown(msg.get('kind'))}")
    return msg
