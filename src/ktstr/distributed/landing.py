"""A finished variant's record and files, landed in the client's runs directory and index.

Each lands as it arrives, so a client that crashes or is interrupted keeps
every variant that finished before.  The worker is another host: what it
sends is checked for shape and size before anything reads it, its record
is validated like any stored one, and its file names may not leave the
new run directory.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ktstr import paths
from ktstr.distributed.shipping import relative
from ktstr.distributed.task import DONE, ERROR, INFRASTRUCTURE, MAX_FILE_BYTES, REFUSED
from ktstr.record import RunRecord, stored

OUTCOMES = (DONE, ERROR, INFRASTRUCTURE, REFUSED)
MAX_FILES = 10_000  # a run directory's files, far above what a run writes
MAX_TEXT = 1000  # a host name, a worker address, an error sentence


def checked(outcome: object) -> dict:
    """A worker's outcome with the shape :func:`execute` gives it; strings cut to size.

    Anything else becomes an error outcome naming what was wrong.
    """

    def bad(why: str) -> dict:
        return {"outcome": ERROR, "error": f"a worker sent a malformed result ({why})"}

    if not isinstance(outcome, dict) or outcome.get("outcome") not in OUTCOMES:
        return bad("no known outcome")
    out = dict(outcome)
    for name in ("host", "worker", "error", "ktstr"):
        if out.get(name) is not None:
            if not isinstance(out[name], str):
                return bad(f"{name} is not text")
            out[name] = out[name][:MAX_TEXT]
    if out["outcome"] != DONE:
        out.setdefault("error", "no reason given")
        return out
    files = out.get("files") or {}
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        return bad("its files are not a bounded mapping")
    for name, data in files.items():
        if not isinstance(name, str) or not isinstance(data, bytes) or len(data) > MAX_FILE_BYTES:
            return bad(f"file {str(name)[:100]!r} is not bytes within {MAX_FILE_BYTES} bytes")
    return out


def safe_name(name: str) -> PurePosixPath:
    """A relative path inside a run directory, or ConfigError."""
    return relative(name, "a worker", "upgrade or restart the worker")


def land(
    outcome: dict, scenario: str, topology: str, attempts: list[dict]
) -> tuple[RunRecord, Path]:
    """Write the worker's files and record into a new run directory here; index it."""
    from ktstr.runner import save

    record = stored.from_json(outcome.get("record"), f"the record from {outcome.get('host')}")
    files = {safe_name(name): data for name, data in (outcome.get("files") or {}).items()}
    run_dir = paths.new_run_dir(f"{scenario}-{topology}")
    for name, data in files.items():
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    record["host"] = outcome.get("host")  # type: ignore[typeddict-unknown-key]
    record["distributed"] = {  # type: ignore[typeddict-unknown-key]
        "worker": outcome.get("worker"),
        "attempts": attempts,
    }
    save(record, run_dir)  # record.json last: a reader never sees a record without its files
    return record, run_dir
