import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ktstr


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.vm)


def qemu_pids_for(marker: str) -> list[str]:
    """QEMU processes whose command line names a file under the directory ``marker``
    (``runs/x/`` and not ``runs/x-1/``)."""
    literal = re.sub(r"([.\[\](){}*+?|^$\\])", r"\\\1", marker.rstrip("/"))  # POSIX ERE
    pattern = f"qemu-system.*{literal}/"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return out.split()


@pytest.fixture(scope="session")
def no_sched_ext_kernel() -> str:
    """Debian trixie's 6.12 kernel: real, bootable, and built without sched_ext."""
    proc = ktstr("kernel", "fetch", "--suite", "trixie")
    assert proc.returncode == 0, proc.stderr
    release = proc.stdout.split(":", 1)[1].split()[0]
    assert release.startswith("6.12"), proc.stdout
    return release
