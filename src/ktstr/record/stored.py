"""record.json on disk: the one writer and the one loader.

The loader is where a stored record is trusted: it refuses what is not a
record (with one sentence naming the file and the fix), checks the types
of the fields readers index, and upgrades older schema versions, so no
reader needs its own ``json.loads`` or ``.get`` guesswork.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

from ktstr.errors import ConfigError
from ktstr.record.schema import SCHEMA, RunRecord

RECORD_FILE = "record.json"
# Top-level fields with their JSON types; a stored record with another type is corrupt.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "scenario": str,
    "topology": str,
    "skipped": str,
    "duration_s": (int, float),
    "plan": dict,
    "observed_topology": dict,
    "kernel": dict,
    "accel": dict,
    "calibration": dict,
    "workers": list,
    "events": list,
    "timeline": list,
    "sched_ext": dict,
    "console": list,
    "vm_end": str,
    "timings_s": dict,
    "thresholds": dict,
    "checks_enabled": dict,
    "kernel_allow": list,
    "disks": list,
    "scheduler": dict,
    "channel": dict,
    "workload_skipped": str,
    "verdict": str,
    "findings": list,
}


def _upgrade_1(record: dict[str, Any]) -> dict[str, Any]:
    """Version 1 did not count refused guest lines: ``channel`` stays out (unknown, never
    claimed zero), and no console line was allowed."""
    record.setdefault("kernel_allow", [])
    return record


_UPGRADES = {1: _upgrade_1}


def problems(record: object) -> list[str]:
    """Why ``record`` is not a usable RunRecord (empty when it is)."""
    if not isinstance(record, dict):
        return [f"it is a JSON {type(record).__name__}, not an object"]
    out = []
    for key, kind in _FIELD_TYPES.items():
        if key in record and record[key] is not None and not isinstance(record[key], kind):
            out.append(f"field {key!r} is a {type(record[key]).__name__}")
    workers = record.get("workers")
    for i, worker in enumerate(workers if isinstance(workers, list) else []):
        if not isinstance(worker, dict) or not isinstance(worker.get("id"), int):
            out.append(f"workers[{i}] has no integer id")
            break
    for name in ("events", "timeline", "findings", "disks"):
        items = record.get(name)
        if isinstance(items, list) and not all(isinstance(x, dict) for x in items):
            out.append(f"{name} holds something other than objects")
    if isinstance(record.get("console"), list) and not all(
        isinstance(x, str) for x in record["console"]
    ):
        out.append("console holds something other than lines")
    return out


def from_json(data: object, where: str = "the record") -> RunRecord:
    """A validated, upgraded record from parsed JSON."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is not a ktstr run record", "pass a run made by 'ktstr run'")
    version = data.get("schema")
    if not isinstance(version, int) or not 1 <= version <= SCHEMA:
        raise ConfigError(
            f"{where} has record schema {version!r}, this ktstr reads 1 to {SCHEMA}",
            "re-run the scenario with this ktstr"
            if isinstance(version, int) and version > SCHEMA
            else "pass a run made by 'ktstr run'",
        )
    found = problems(data)
    if found:
        raise ConfigError(f"{where} is corrupt: {found[0]}", "re-run the scenario")
    while data["schema"] < SCHEMA:
        data = _UPGRADES[data["schema"]](data)
        data["schema"] += 1
    return cast(RunRecord, data)


def record_path(run: str | Path) -> Path:
    """``record.json`` of a run directory (or the path itself when it names the file)."""
    path = Path(run)
    return path / RECORD_FILE if path.is_dir() else path


def load(run: str | Path) -> tuple[RunRecord, Path]:
    """A stored record by run directory or record.json path, and its run directory."""
    path = record_path(run)
    if not path.is_file():
        raise ConfigError(f"no record at {path}", "pass a run directory made by 'ktstr run'")
    try:
        data = json.loads(path.read_text(errors="replace"))
    except ValueError as err:
        raise ConfigError(
            f"{path} is not valid JSON ({err})", "re-run the scenario or remove the run"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}", "check its permissions") from None
    return from_json(data, str(path)), path.parent


def save(record: RunRecord, run_dir: Path) -> Path:
    """Write record.json atomically (a reader never sees half a record)."""
    path = run_dir / RECORD_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
