"""A finished variant's record and files, landed in the client's runs directory and index.

Each lands as it arrives, so a client that crashes or is interrupted keeps
every variant that finished before.  The worker is another host: its
record is validated like any stored one, and its file names may not leave
the new run directory.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ktstr import paths
from ktstr.errors import ConfigError
from ktstr.record import RunRecord, stored


def safe_name(name: str) -> PurePosixPath:
    """A relative path inside a run directory, or ConfigError."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ConfigError(f"a worker sent a file named {name!r}", "upgrade or restart the worker")
    return path


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
