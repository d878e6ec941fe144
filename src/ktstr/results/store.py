"""The result store: every run's record.json under the runs root, indexed in SQLite.

The index is a convenience over the records (``ktstr results reindex``
rebuilds it from them); the records are the truth.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from ktstr import paths
from ktstr.errors import ConfigError
from ktstr.record import load

log = logging.getLogger(__name__)

COLUMNS = (
    "run",
    "time",
    "scenario",
    "topology",
    "scheduler",
    "profile",
    "kernel",
    "commit",
    "dirty",
    "ktstr",
    "host",
    "accel",
    "verdict",
)
FILTERABLE = set(COLUMNS) - {"run"}


def project_git() -> dict:
    """The commit of the project ktstr runs in (the scheduler's, usually), and if it is dirty."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _db(root: Path | None = None) -> sqlite3.Connection:
    root = root or paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(root / "index.sqlite", timeout=30)
    columns = ", ".join(f'"{c}"' for c in COLUMNS)  # "commit" is an SQL keyword
    con.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns}, PRIMARY KEY (run))")
    return con


def row_of(record: dict, run_dir: Path) -> dict:
    sched = record.get("scheduler")
    git = record.get("git") or {}
    return {
        "run": run_dir.name,
        "time": record.get("created"),
        "scenario": record.get("scenario"),
        "topology": record.get("topology"),
        "scheduler": sched.get("name") if isinstance(sched, dict) else sched,
        "profile": (sched.get("profile") if isinstance(sched, dict) else None) or "",
        "kernel": (record.get("kernel") or {}).get("release"),
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "ktstr": record.get("ktstr_version"),
        "host": record.get("host"),
        "accel": (record.get("accel") or {}).get("name"),
        "verdict": record.get("verdict"),
    }


def index(record: dict, run_dir: Path) -> None:
    row = row_of(record, run_dir)
    with _db(run_dir.parent) as con:
        con.execute(
            f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(COLUMNS))})",
            [row[c] for c in COLUMNS],
        )


def reindex(root: Path | None = None) -> int:
    root = root or paths.runs_dir()
    count = 0
    for record_path in sorted(root.glob("*/record.json")):
        try:
            record, run_dir = load(record_path)
        except ConfigError as err:
            log.warning("not indexed: %s", err)
            continue
        index(record, run_dir)
        count += 1
    return count


def parse_filters(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or key not in FILTERABLE:
                raise ConfigError(
                    f"filter {part!r} is not key=value over a known column",
                    f"use one of: {', '.join(sorted(FILTERABLE))}",
                )
            out[key] = value
    return out


def query(filters: dict[str, str] | None = None, root: Path | None = None) -> list[dict]:
    """Runs matching every filter (``kernel=7.2`` matches by prefix), oldest first."""
    with closing(_db(root)) as con:
        rows = [
            dict(zip(COLUMNS, r, strict=True))
            for r in con.execute("SELECT * FROM runs ORDER BY time, run")
        ]
    for key, value in (filters or {}).items():
        rows = [r for r in rows if str(r[key] if r[key] is not None else "").startswith(value)]
    return rows


def run_path(run: str, root: Path | None = None) -> Path:
    root = root or paths.runs_dir()
    for candidate in (Path(run), root / run):
        if (candidate / "record.json").is_file():
            return candidate
    raise ConfigError(f"no run {run!r} under {root}", "see 'ktstr results list'")
