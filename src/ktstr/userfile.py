"""Scenarios, schedulers and tests declared in a user's Python file: ``path/file.py::NAME``.

The CLI runs what a user wrote, not only the catalog.  A file is imported
once per process; an import that fails prints the file's own traceback
(the user's bug, not ktstr's), then ends in one sentence.  ``NAME`` is the
variable the file binds, or else the declared object's own ``name``.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ktstr.errors import ConfigError, KtstrError

if TYPE_CHECKING:
    from ktstr.scenario.model import Scenario
    from ktstr.scheduler import Scheduler

Wanted = type | tuple[type, ...] | Callable[[object], bool]

SEPARATOR = "::"


def is_ref(text: str) -> bool:
    """Whether ``text`` names a user file (``file.py::NAME`` or ``file.py``), not a catalog name."""
    return SEPARATOR in text or text.endswith(".py")


def split_ref(ref: str) -> tuple[Path, str | None]:
    path, _, name = ref.partition(SEPARATOR)
    return Path(path).expanduser(), name or None


_MODULES: dict[Path, ModuleType] = {}


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a module of its own (cached: a gauntlet loads it once)."""
    key = path.resolve()
    if key in _MODULES:
        return _MODULES[key]
    if not path.is_file():
        raise ConfigError(f"{path} does not exist", "give the path of a Python file")
    name = f"ktstr_user_{len(_MODULES)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, key)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as Python", "give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    failure = None
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's code: any exception is theirs
        failure = err
    if failure is not None:  # outside the except block: no chained ktstr frames
        sys.modules.pop(name, None)
        if isinstance(failure, KtstrError):
            # ktstr refused a declaration in the file: its sentence, at the file's line
            lines = [
                f.lineno
                for f in traceback.extract_tb(failure.__traceback__)
                if Path(f.filename) == key
            ]
            where = f"{path}, line {lines[-1]}" if lines else str(path)
            raise type(failure)(f"{where}: {failure.cause}", failure.fix)
        print_user_traceback(failure, key)
        what = f"{type(failure).__name__}: {failure}".strip().rstrip(":")
        raise ConfigError(
            f"importing {path} failed ({what})", "fix the file; its traceback is above"
        )
    _MODULES[key] = module
    return module


def print_user_traceback(err: BaseException, path: Path) -> None:
    """The traceback from the user's file down, without the import machinery above it."""
    frames = traceback.extract_tb(err.__traceback__)
    start = next((i for i, f in enumerate(frames) if Path(f.filename) == path), len(frames))
    lines = []
    if frames[start:]:  # a SyntaxError has none there: its own text names file and line
        lines += ["Traceback (most recent call last):\n", *traceback.format_list(frames[start:])]
    lines += traceback.format_exception_only(type(err), err)
    sys.stderr.write("".join(lines))
    sys.stderr.flush()


def declared(path: Path, kind: Wanted) -> dict[str, object]:
    """Every module-level object of ``kind`` (a type, or a test on the object) in the file,
    by variable name, in file order."""
    module = import_file(path)
    fits = kind if not isinstance(kind, (type, tuple)) else lambda v: isinstance(v, kind)
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and fits(v)}


def load(ref: str, kind: Wanted, what: str, whats: str | None = None) -> tuple[str, object]:
    """The object ``ref`` names, and its variable name; one sentence when there is none.

    ``what`` names the kind in that sentence (``whats``: its plural, default ``what + "s"``).

    Without ``::NAME`` the file must declare exactly one object of ``kind``.
    """
    path, name = split_ref(ref)
    found = declared(path, kind)
    if name is None:
        if len(found) == 1:
            return next(iter(found.items()))
        return _refuse(
            path, f"{path} declares {len(found)} {whats or what + 's'}", found, what, whats
        )
    if name in found:
        return name, found[name]
    by_own_name = [(k, v) for k, v in found.items() if getattr(v, "name", None) == name]
    if len(by_own_name) == 1:
        return by_own_name[0]
    module = import_file(path)
    if name in vars(module):
        got = type(vars(module)[name]).__name__
        return _refuse(path, f"{name} in {path} is a {got}, not a {what}", found, what, whats)
    return _refuse(path, f"{path} does not define {name}", found, what, whats)


def _refuse(
    path: Path, cause: str, found: dict[str, object], what: str, whats: str | None
) -> tuple[str, object]:
    if found:
        some = f"the {what} " if len(found) == 1 else f"the {whats or what + 's'} "
        some += ", ".join(found)
        fix = f"it declares {some}: give {path}::NAME with one of them"
    else:
        fix = f"declare a {what} at the top level of {path}"
    raise ConfigError(cause, fix)


def scenario(ref: str) -> Scenario:
    """A catalog name, or a Scenario declared in a user file."""
    from ktstr.scenario.catalog import get
    from ktstr.scenario.model import Scenario

    if not is_ref(ref):
        return get(ref)
    return load(ref, Scenario, "Scenario")[1]  # type: ignore[return-value]


def scheduler(ref: str | None) -> Scheduler:
    """``--scheduler``: a name or path as before, or a Scheduler declared in a user file."""
    from ktstr.scheduler import Scheduler, from_cli

    if ref and SEPARATOR in ref:
        return load(ref, Scheduler, "Scheduler")[1]  # type: ignore[return-value]
    return from_cli(ref)


def is_test(obj: object) -> bool:
    """A ``@ktstr_test`` function: it carries its declaration in ``.ktstr``."""
    return callable(obj) and isinstance(getattr(obj, "ktstr", None), dict)


def scenario_or_test(ref: str) -> object:
    """``shell --test``: a Scenario or a ``@ktstr_test`` function declared in a user file."""
    from ktstr.scenario.model import Scenario

    fits = lambda v: isinstance(v, Scenario) or is_test(v)  # noqa: E731
    return load(ref, fits, "Scenario or @ktstr_test", "Scenarios or @ktstr_tests")[1]
