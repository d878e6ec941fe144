"""Import rules between ktstr's layers, checked on the source with ``ast``.

The guest image packs only ``ktstr.guest`` and ``ktstr.wire`` and runs
them on a bare interpreter, so the guest may import nothing else; the
host must not reach into guest code; and pytest is a dev dependency, so
only the plugin may import it. Every import counts: ``import x``,
``from x import y``, relative imports and imports inside functions.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    text: str  # the statement as written
    # absolute dotted names: ``import a, b`` -> (a, b); ``from a import b`` -> (a,)
    modules: tuple[str, ...]
    names: tuple[str, ...] = ()  # what ``from a import ...`` takes, each maybe a submodule of a

    @property
    def targets(self) -> tuple[str, ...]:
        """Every module the statement may load."""
        return self.modules + tuple(f"{self.modules[0]}.{n}" for n in self.names if n != "*")

    def where(self, root: Path) -> str:
        shown = self.file.relative_to(root) if self.file.is_relative_to(root) else self.file
        return f"{shown}:{self.line}: {self.text}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> list[Import]:
    """Every import statement in ``path`` (``root`` holds the top package), made absolute."""
    source = path.read_text()
    tree = ast.parse(source, str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package.pop()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        text = " ".join((ast.get_source_segment(source, node) or "").split())
        if isinstance(node, ast.Import):
            modules, names = tuple(alias.name for alias in node.names), ()
        else:
            if node.level:
                keep = package[: len(package) - (node.level - 1)]
                base = ".".join(keep + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            modules, names = (base,), tuple(alias.name for alias in node.names)
        found.append(Import(path, node.lineno, text, modules, names))
    return found


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names


def host_imports_of_the_guest(src: Path) -> list[Import]:
    """Rule (a): outside ktstr/guest/, no import may load ktstr.guest."""
    guest = src / "ktstr" / "guest"
    return [
        imp
        for path in sorted((src / "ktstr").rglob("*.py"))
        if not path.is_relative_to(guest)
        for imp in imports(path, src)
        if any(under(t, "ktstr.guest") for t in imp.targets)
    ]


def guest_imports_beyond_its_rule(src: Path) -> list[Import]:
    """Rule (b): ktstr/guest/ loads only the stdlib, ktstr.wire and ktstr.guest.*."""

    def fine(module: str) -> bool:
        if under(module, "ktstr"):
            return module == "ktstr.wire" or under(module, "ktstr.guest")
        return is_stdlib(module)

    def allowed(imp: Import) -> bool:
        if imp.modules == ("ktstr",) and imp.names:  # from ktstr import x: judged by what x is
            return all(fine(f"ktstr.{n}") for n in imp.names)
        return all(fine(m) for m in imp.modules)

    guest = src / "ktstr" / "guest"
    return [
        imp
        for path in sorted(guest.rglob("*.py"))
        for imp in imports(path, src)
        if not allowed(imp)
    ]


def pytest_imports_outside_the_plugin(src: Path) -> list[Import]:
    """Rule (c): pytest is a dev dependency; only the plugin may import it."""
    plugin = src / "ktstr" / "pytest_plugin.py"
    return [
        imp
        for path in sorted((src / "ktstr").rglob("*.py"))
        if path != plugin
        for imp in imports(path, src)
        if any(under(t, "pytest") or under(t, "_pytest") for t in imp.targets)
    ]


def check(broken: list[Import], rule: str) -> None:
    """Fail with one line per offending import: file, line, statement."""
    if broken:
        lines = "\n".join(f"  {imp.where(SRC.parent)}" for imp in broken)
        pytest.fail(f"{rule}:\n{lines}", pytrace=False)


# The scanner and the rules, on code written to break them.


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_scanner_resolves_every_import_form(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "ktstr/guest/__init__.py": "from . import agent\n",
            "ktstr/guest/agent.py": """\
                import os, json.decoder
                from .. import wire
                from ..scenario import model
                from .channel import Channel
                def late():
                    from ktstr.guest import topo
                """,
        },
    )
    agent = tmp_path / "ktstr/guest/agent.py"
    found = sorted((i.line, i.targets) for i in imports(agent, tmp_path))
    assert found == [
        (1, ("os", "json.decoder")),
        (2, ("ktstr", "ktstr.wire")),
        (3, ("ktstr.scenario", "ktstr.scenario.model")),
        (4, ("ktstr.guest.channel", "ktstr.guest.channel.Channel")),
        (6, ("ktstr.guest", "ktstr.guest.topo")),
    ]
    init = [i.targets for i in imports(tmp_path / "ktstr/guest/__init__.py", tmp_path)]
    assert init == [("ktstr.guest", "ktstr.guest.agent")]


def test_stdlib_check_knows_the_difference() -> None:
    assert is_stdlib("os.path") and is_stdlib("json") and is_stdlib("__future__")
    assert not is_stdlib("pytest") and not is_stdlib("ktstr") and not is_stdlib("zstandard")


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "ktstr/__init__.py": "",
            "ktstr/wire.py": "import json\n",
            "ktstr/runner.py": """\
                from ktstr.wire import encode
                def calibrate():
                    from .guest.scenario import calibrate
                """,
            "ktstr/initramfs/image.py": "from .. import guest\n",
            "ktstr/probe.py": "import ktstr.guest.topo\n",
            "ktstr/budget.py": "def f():\n    import pytest\n",
            "ktstr/pytest_plugin.py": "import pytest\nfrom _pytest import nodes\n",
            "ktstr/guest/__init__.py": "",
            "ktstr/guest/fine.py": """\
                from __future__ import annotations
                import os, json.decoder
                from ktstr import wire
                from ktstr.wire import encode
                from . import topo
                from .channel import Channel
                """,
            "ktstr/guest/bad.py": """\
                import ktstr
                from ktstr import wire, topology
                import os, ktstr.scenario.model
                from ..checks import judge
                def late():
                    import zstandard
                """,
        },
    )

    def where(found: list[Import]) -> list[str]:
        return sorted(f"{i.file.relative_to(tmp_path)}:{i.line}" for i in found)

    assert where(host_imports_of_the_guest(tmp_path)) == [
        "ktstr/initramfs/image.py:1",
        "ktstr/probe.py:1",
        "ktstr/runner.py:3",
    ]
    assert where(guest_imports_beyond_its_rule(tmp_path)) == [
        f"ktstr/guest/bad.py:{n}" for n in (1, 2, 3, 4, 6)
    ]
    assert where(pytest_imports_outside_the_plugin(tmp_path)) == ["ktstr/budget.py:2"]


# The rules, on ktstr itself.


def test_only_the_guest_imports_the_guest() -> None:
    check(host_imports_of_the_guest(SRC), "host-side modules import ktstr.guest")


def test_the_guest_imports_only_the_stdlib_wire_and_itself() -> None:
    check(
        guest_imports_beyond_its_rule(SRC),
        "ktstr.guest may import only the standard library, ktstr.wire and ktstr.guest.*",
    )


def test_only_the_plugin_imports_pytest() -> None:
    check(pytest_imports_outside_the_plugin(SRC), "only ktstr/pytest_plugin.py may import pytest")


# The gauntlet without pytest: a plain ``pip install ktstr`` has none.


def run_without_pytest(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing pytest fails."""
    blocked = f"import sys; sys.modules['pytest'] = None; sys.modules['_pytest'] = None\n{code}"
    return subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True)


def test_the_gauntlet_imports_without_pytest() -> None:
    done = run_without_pytest("import ktstr.gauntlet, ktstr.cli.gauntlet")
    assert done.returncode == 0, done.stderr


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, e.g. ktstr.disk.Disk
        return False


def test_what_the_gauntlet_imports_when_it_runs_needs_no_pytest() -> None:
    """Every ktstr module the gauntlet and its CLI import, at top or inside a function."""
    wanted = sorted(
        {
            t
            for path in (SRC / "ktstr/gauntlet.py", SRC / "ktstr/cli/gauntlet.py")
            for imp in imports(path, SRC)
            for t in imp.targets
            if under(t, "ktstr") and is_module(t)
        }
    )
    assert "ktstr.runner" in wanted and "ktstr.budget" in wanted
    done = run_without_pytest("".join(f"import {name}\n" for name in wanted))
    assert done.returncode == 0, done.stderr


def test_the_gauntlet_cli_plans_without_pytest() -> None:
    """The CLI path up to booting: parse, plan the cells, pick them within a budget."""
    code = """
from ktstr import gauntlet
from ktstr.budget import select
from ktstr.cli import parser
from ktstr.scheduler import EEVDF
args = parser().parse_args(["gauntlet", "steady", "--presets", "tiny-1llc,odd-3llc"])
cells = gauntlet.plan(args.scenarios, EEVDF, args.presets.split(","), None)
assert [(s, v.topology) for s, v in cells] == [("steady", "1n1l4c1t"), ("steady", "1n3l3c1t")]
print(len(select(cells, "eevdf", 12.0, 1000.0).cells))
"""
    done = run_without_pytest(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_gauntlet_help_without_pytest() -> None:
    done = run_without_pytest("from ktstr.cli import main; sys.exit(main(['gauntlet', '--help']))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ktstr gauntlet")
