import json

import pytest

from ktstr import wire
from ktstr.guest.topo import parse_cpulist


def test_encode_decode_round_trip():
    line = wire.encode(wire.HELLO, release="7.2")
    assert line.endswith(b"\n")
    msg = wire.decode(line)
    assert msg["kind"] == "hello" and msg["v"] == wire.VERSION and msg["release"] == "7.2"


def test_decode_refuses_other_versions_and_kinds():
    with pytest.raises(wire.WireError, match="version"):
        wire.decode(json.dumps({"v": 999, "kind": "hello"}))
    with pytest.raises(wire.WireError, match="kind"):
        wire.decode(json.dumps({"v": wire.VERSION, "kind": "nope"}))
    with pytest.raises(wire.WireError, match="JSON"):
        wire.decode("{oops")
    with pytest.raises(wire.WireError):
        wire.encode("nope")


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", [0]), ("0-3", [0, 1, 2, 3]), ("0-1,8,10-11\n", [0, 1, 8, 10, 11]), ("", [])],
)
def test_parse_cpulist(text, cpus):
    assert parse_cpulist(text) == cpus


def test_guest_package_imports_nothing_from_the_host_side():
    import ast
    from pathlib import Path

    import ktstr.guest

    for src in Path(ktstr.guest.__file__).parent.glob("*.py"):
        tree = ast.parse(src.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ktstr"):
                assert node.module == "ktstr" or node.module.startswith("ktstr.guest"), src
                if node.module == "ktstr":
                    assert [a.name for a in node.names] == ["wire"], src


def test_guest_imports_inside_functions_are_packed_lazy_imports():
    """The image packs what the guest imports at module top, plus LAZY_IMPORTS.

    An import inside a function that is neither would fail only in a VM.
    """
    import ast
    from pathlib import Path

    import ktstr.guest
    from ktstr import wire
    from ktstr.guest import LAZY_IMPORTS

    def covered(name: str) -> bool:
        return any(lazy == name or lazy.startswith(name + ".") for lazy in LAZY_IMPORTS)

    sources = [*Path(ktstr.guest.__file__).parent.glob("*.py"), Path(wire.__file__)]
    for src in sources:
        for fn in ast.walk(ast.parse(src.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    assert covered(name), f"{src.name}: {name} is imported lazily but not packed"
