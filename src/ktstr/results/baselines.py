"""Named baselines: a saved list of runs, to compare later runs against."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ktstr import paths
from ktstr.errors import ConfigError
from ktstr.record import load
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


def saved_runs(name: str) -> list[str]:
    """The run names a saved baseline lists.

    A baseline is the user's own record, not a cache: a corrupt one is
    reported with its path, never silently replaced.
    """
    path = _path(name)
    try:
        runs = json.loads(path.read_text())["runs"]
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise TypeError("runs is not a list of names")
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"baseline {name!r} ({path}) is not the JSON 'ktstr baseline save' writes",
            f"save it again with 'ktstr baseline save {name} --from KEY=VALUE', or delete {path}",
        ) from None
    return runs


def git_commit(revision: str) -> str | None:
    """The commit a revision of the project in the current directory names, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def records(side: str) -> list[dict]:
    """A side of a comparison: a baseline name, a selection such as ``scheduler=eevdf``, or a
    git revision of the project the runs were made in (``main``, ``HEAD~1``, a SHA)."""
    if exists(side):
        names = saved_runs(side)
    elif "=" in side:
        names = [r["run"] for r in store.query(store.parse_filters([side]))]
    elif commit := git_commit(side):
        names = [r["run"] for r in store.query({"commit": commit})]
    else:
        names = []
    out = []
    for name in names:
        out.append(load(store.run_path(name))[0])
    if not out:
        raise ConfigError(
            f"{side!r} names no baseline, selects no runs and is no git revision with runs",
            "save a baseline or give filters such as scheduler=eevdf",
        )
    return out
