"""Pack the host's Python interpreter and the stdlib subset the guest agent imports.

The guest runs the very interpreter ktstr runs on, at the same path,
so its prefix logic works unchanged.  The stdlib goes in as sourceless
``.pyc`` files in a directory (not a zip of sources): under TCG that
makes the agent start in about half a second instead of three.
"""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Codecs the interpreter may need at start-up whatever the console's locale.
_STARTUP_MODULES = ("encodings.utf_8", "encodings.ascii", "encodings.latin_1")


@dataclass(frozen=True)
class PythonRuntime:
    executable: str  # real path of the interpreter binary
    prefix: str  # PYTHONHOME for the guest
    stdlib: str
    dynload: str
    version: str

    @classmethod
    def host(cls) -> PythonRuntime:
        """The interpreter ktstr itself runs on (the venv's base, not the venv)."""
        exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
        paths = sysconfig.get_paths(
            vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
        )
        stdlib = paths["stdlib"]
        return cls(
            executable=exe,
            prefix=sys.base_prefix,
            stdlib=stdlib,
            dynload=os.path.join(paths["platstdlib"], "lib-dynload"),
            version=sys.version,
        )

    def identity(self) -> str:
        """What changes when the interpreter is replaced or upgraded (for cache keys)."""
        st = os.stat(self.executable)
        return f"{self.executable}|{st.st_size}|{st.st_mtime_ns}|{self.version}"


_TRACER = """
import sys, types
pkg = types.ModuleType("ktstr")
pkg.__path__ = [sys.argv[1]]
sys.modules["ktstr"] = pkg
for name in sys.argv[2:]:
    __import__(name)
for mod in list(sys.modules.values()):
    path = getattr(mod, "__file__", None)
    if path:
        print(path)
"""


def stdlib_modules(runtime: PythonRuntime, package_dir: Path, modules: list[str]) -> list[str]:
    """Files (``.py`` sources and extension ``.so``) of the stdlib the guest imports.

    The guest modules are imported in a fresh ``python -S`` and every
    stdlib file it loaded is kept, which is exact as long as guest code
    imports at module top (a rule of ``ktstr.guest``).
    """
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONUTF8": "1"}
    out = subprocess.run(
        [runtime.executable, "-S", "-c", _TRACER, str(package_dir), *_STARTUP_MODULES, *modules],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"tracing the guest's imports failed:\n{out.stderr}")
    roots = (runtime.stdlib + os.sep, runtime.dynload + os.sep)
    files = {p for p in out.stdout.splitlines() if p.startswith(roots) and "site-packages" not in p}
    return sorted(files)


def compile_sourceless(src: str | Path, display_name: str) -> bytes:
    """Bytecode of one source file as an unchecked-hash ``.pyc``."""
    with tempfile.TemporaryDirectory(prefix="ktstr-pyc-") as tmp:
        out = os.path.join(tmp, "m.pyc")
        py_compile.compile(
            str(src),
            cfile=out,
            dfile=display_name,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        with open(out, "rb") as f:
            return f.read()


def pyc_path(path: str) -> str:
    """``.../os.py`` -> ``.../os.pyc`` (sourceless layout)."""
    return path[:-3] + ".pyc" if path.endswith(".py") else path
