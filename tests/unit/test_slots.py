"""The host-wide VM slot cap, across processes."""

import multiprocessing

import pytest

from ktstr.errors import ConfigError
from ktstr.vm import slots
from tests.helpers import HANG_GUARD_S, wait_until


def _hold(counts, lock, release) -> None:
    """Take a slot, count who is inside (and the peak), and keep it until released."""
    with slots.vm_slot():
        with lock:
            counts["inside"] += 1
            counts["entered"] += 1
            counts["peak"] = max(counts["peak"], counts["inside"])
        release.acquire()
        with lock:
            counts["inside"] -= 1
            counts["left"] += 1


def test_processes_never_exceed_the_slots_and_reuse_them(tmp_path, monkeypatch):
    """Five processes, two slots: at most two inside; each release lets the next one in.

    The holders keep their slot until the test releases it, so the order is driven
    by events, not by how fast the host runs them.
    """
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("KTSTR_VM_SLOTS", "2")
    ctx = multiprocessing.get_context("fork")
    manager = ctx.Manager()
    counts = manager.dict(inside=0, entered=0, left=0, peak=0)
    lock, release = ctx.Lock(), ctx.Semaphore(0)
    procs = [ctx.Process(target=_hold, args=(counts, lock, release)) for _ in range(5)]
    for p in procs:
        p.start()
    try:
        for left in range(5):
            entered = min(left + 2, 5)  # two slots: each holder out lets one more in
            wait_until(
                lambda e=entered, n=left: counts["entered"] >= e and counts["left"] == n,
                f"{entered} holders in after {left} released",
            )
            assert (counts["entered"], counts["inside"]) == (entered, entered - left)
            release.release()
        for p in procs:
            p.join(HANG_GUARD_S)
            assert p.exitcode == 0
        assert counts["peak"] == 2
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        manager.shutdown()


def test_slot_count_validated(monkeypatch):
    monkeypatch.setenv("KTSTR_VM_SLOTS", "0")
    with pytest.raises(ConfigError):
        slots.slot_count()
    monkeypatch.setenv("KTSTR_VM_SLOTS", "x")
    with pytest.raises(ConfigError):
        slots.slot_count()
