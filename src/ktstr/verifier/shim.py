"""The preload library that records the verifier's statistics (``native/vstats``).

Built with the host's C compiler into the cache, keyed by its source, and
packed beside the scheduler: the guest runs the scheduler with
``LD_PRELOAD`` pointing at it, so what is measured is the loader's own
load, with the values it writes into its programs before loading them.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from ktstr import paths
from ktstr.errors import EnvironmentProblem
from ktstr.initramfs import elfdeps

SOURCE = Path(__file__).parent.parent / "native" / "vstats" / "ktstr_vstats.c"
LIBRARY = "ktstr_vstats.so"
GUEST_DIR = "/ktstr/vstats"
GUEST_LOG_DIR = "/run/ktstr-vstats"
_HEADER = Path("/usr/include/linux/bpf.h")


def build() -> Path:
    """The built library (compiled once per source version)."""
    source = SOURCE.read_bytes()
    out = paths.cache_dir() / "vstats" / hashlib.sha256(source).hexdigest()[:16] / LIBRARY
    if out.is_file():
        return out
    needed_for = "the verifier statistics library"
    cc = paths.host_tool("cc", needed_for)
    if not _HEADER.is_file():
        raise EnvironmentProblem(
            f"{_HEADER} is missing, and {needed_for} needs it",
            "install it with: sudo apt-get install linux-libc-dev",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    argv = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(SOURCE), "-ldl"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line] or ["no output"]
        raise EnvironmentProblem(
            f"building {needed_for} failed: {errors[0].strip()}",
            f"check the compiler with: {' '.join(argv)}",
        )
    tmp.replace(out)
    return out


def attach(spec: dict, files: dict[str, bytes]) -> None:
    """Make the plan's scheduler entry run under the library, and pack it with its libraries."""
    library = build()
    guest_path = f"{GUEST_DIR}/{LIBRARY}"
    files[guest_path] = library.read_bytes()
    for guest_lib, host_lib in elfdeps.closure([library]).items():
        files.setdefault(guest_lib, Path(host_lib).read_bytes())
    spec["verifier"] = {"preload": guest_path, "dir": GUEST_LOG_DIR}
