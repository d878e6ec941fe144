"""A host-wide cap on VMs running at once, shared by every ktstr process.

pytest-xdist workers, parallel CLI runs and the gauntlet pool all start
VMs; each VM holds one slot (an flock on a file in the cache) for its
lifetime, so together they never exceed the budget.  The kernel drops a
dead process's locks, so a crash cannot leak a slot.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ktstr import paths
from ktstr.host import positive_int_env

_POLL_S = 0.2


def slot_count() -> int:
    """``KTSTR_VM_SLOTS``, else one VM per host CPU."""
    return positive_int_env("KTSTR_VM_SLOTS", os.cpu_count() or 1)


@contextmanager
def vm_slot() -> Iterator[int]:
    """Hold one of the host's VM slots while the block runs; wait for one if all are taken."""
    directory = paths.cache_dir() / "vm-slots"
    directory.mkdir(parents=True, exist_ok=True)
    count = slot_count()
    while True:
        for index in range(count):
            fd = os.open(directory / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield index
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(_POLL_S)
