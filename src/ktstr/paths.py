"""Where ktstr keeps caches and run output; overridable by environment."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path

from ktstr.errors import EnvironmentProblem

# Host programs ktstr runs, and the Debian package that provides each.
TOOL_PACKAGES = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "tar": "tar",
    "xz": "xz-utils",
    "make": "make",
    "cc": "gcc",
}


def cache_dir() -> Path:
    """Root of downloaded and built artefacts (``KTSTR_CACHE_DIR``)."""
    env = os.environ.get("KTSTR_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "ktstr"


def kernels_dir() -> Path:
    return cache_dir() / "kernels"


# A root for this thread's runs only: a distributed worker runs variants in scratch
# space while the process (maybe a client's, in a local cluster) keeps its own root.
_RUNS_ROOT: ContextVar[Path | None] = ContextVar("ktstr_runs_root", default=None)


def runs_dir() -> Path:
    """Root of run output directories (``KTSTR_RUNS_DIR``, default ``./runs``)."""
    override = _RUNS_ROOT.get()
    if override is not None:
        return override
    return Path(os.environ.get("KTSTR_RUNS_DIR") or "runs")  # set but empty: the default


@contextmanager
def runs_under(root: Path) -> Iterator[Path]:
    """Put the runs started in this thread (and context) under ``root`` while the block runs."""
    token = _RUNS_ROOT.set(root)
    try:
        yield root
    finally:
        _RUNS_ROOT.reset(token)


def new_run_dir(label: str) -> Path:
    """Create a fresh, uniquely named run directory for one VM run."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        suffix = f"-{n}" if n else ""
        path = root / f"{stamp}-{label}{suffix}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a run directory under {root}")


def host_tool(name: str, needed_for: str) -> str:
    """The path of a host program, or one sentence naming the package that provides it.

    Checked before running it, so a missing tool is not a FileNotFoundError
    traceback from deep inside subprocess.
    """
    found = shutil.which(name)
    if not found:
        package = TOOL_PACKAGES.get(name, name)
        raise EnvironmentProblem(
            f"{name} is not installed, and {needed_for} needs it",
            f"install it with: sudo apt-get install {package}",
        )
    return found


def json_record(path: Path, keys: tuple[str, ...], what: str, fix: str) -> dict:
    """A JSON object ktstr wrote and cannot re-derive (a fetch or a build record): one
    holding ``keys``, or one sentence (``KernelError``) naming the file and the fix."""
    from ktstr.errors import KernelError

    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(k in data for k in keys):
            raise ValueError("not the expected object")
    except (OSError, ValueError):
        raise KernelError(f"{path} is not the {what} (corrupt or unreadable)", fix) from None
    return data
