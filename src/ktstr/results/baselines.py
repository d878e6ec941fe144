"""Named baselines: a saved list of runs, to compare later runs against."""

from __future__ import annotations

import json
from pathlib import Path

from ktstr import paths
from ktstr.errors import ConfigError
from ktstr.results import store


def _path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"baseline name {name!r} is not a plain name", "use letters and digits")
    return paths.runs_dir() / "baselines" / f"{name}.json"


def save(name: str, filters: dict[str, str]) -> list[str]:
    runs = [r["run"] for r in store.query(filters)]
    if not runs:
        raise ConfigError("no runs match the selection", "see 'ktstr results list'")
    path = _path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs, "filters": filters}, indent=1) + "\n")
    return runs


def exists(name: str) -> bool:
    try:
        return _path(name).is_file()
    except ConfigError:
        return False


def records(side: str) -> list[dict]:
    """A side of a comparison: a baseline name, or a selection such as ``scheduler=eevdf``."""
    if exists(side):
        names = json.loads(_path(side).read_text())["runs"]
    else:
        names = [r["run"] for r in store.query(store.parse_filters([side]))]
    out = []
    for name in names:
        path = store.run_path(name) / "record.json"
        out.append(json.loads(path.read_text()))
    if not out:
        raise ConfigError(
            f"{side!r} names no baseline and selects no runs",
            "save a baseline or give filters such as scheduler=eevdf",
        )
    return out
