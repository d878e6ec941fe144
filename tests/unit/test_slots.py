"""The host-wide VM slot cap, across processes."""

import multiprocessing
import time

import pytest

from ktstr.errors import ConfigError
from ktstr.vm import slots


def _hold(queue, seconds):
    with slots.vm_slot() as index:
        queue.put(("in", index, time.monotonic()))
        time.sleep(seconds)
        queue.put(("out", index, time.monotonic()))


def test_processes_never_exceed_the_slots(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("KTSTR_VM_SLOTS", "2")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hold, args=(queue, 0.4)) for _ in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    events = sorted((queue.get() for _ in range(10)), key=lambda e: (e[2], e[0] == "in"))
    inside, peak = 0, 0
    for kind, _, _ in events:
        inside += 1 if kind == "in" else -1
        peak = max(peak, inside)
    assert peak == 2


def test_slot_count_validated(monkeypatch):
    monkeypatch.setenv("KTSTR_VM_SLOTS", "0")
    with pytest.raises(ConfigError):
        slots.slot_count()
    monkeypatch.setenv("KTSTR_VM_SLOTS", "x")
    with pytest.raises(ConfigError):
        slots.slot_count()
