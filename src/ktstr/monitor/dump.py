"""The failure dump: the scheduler's whole state at the moment something went wrong,
read from the host and written to ``<run dir>/failure-dump.json``.

Taken once per run, when the first of two things happens: a runnable task
has waited longer than half the scheduler's watchdog timeout (a stall is
developing, and the scheduler's maps still exist), or the scheduler has
started to exit with an error.  The VM is paused over QMP while it is read
(``stop``/``cont``), so the picture is one instant, not a smear; a dump
without QMP is taken live and says so.  Each part is read on its own: a
part that fails to read is replaced by the reason, never the whole dump.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import drgn

from ktstr.monitor import bpfmaps, dsq, rq, scx

FILE = "failure-dump.json"


def _part(what: Callable[[], Any]) -> Any:
    """One part of the dump, or why it could not be read: a racing read, a kernel without
    the fields, or a host bug, which loses that part only."""
    try:
        return what()
    except Exception as err:  # noqa: BLE001 - the other parts are still worth having
        return {"unreadable": f"{type(err).__name__}: {err}"}


def collect(
    prog: drgn.Program, cpus: list[int], tick_hz: int | None, trigger: dict[str, Any]
) -> dict[str, Any]:
    """Every part of the dump as plain values (JSON-ready)."""
    has_scx = rq.has_scx(prog)
    out: dict[str, Any] = {"trigger": trigger, "hz": tick_hz}
    out["cpus"] = _part(lambda: rq.sample_all(prog, cpus, has_scx))
    if not has_scx:
        return out
    out["scx"] = _part(lambda: scx.state(prog))
    out["watchdog_timeout_jiffies"] = _part(lambda: scx.watchdog_timeout(prog))
    out["events"] = _part(lambda: scx.events(prog))
    out["runnable"] = {
        str(cpu): _part(lambda c=cpu: dsq.runnable(prog, c, tick_hz)) for cpu in cpus
    }
    out["dsqs"] = _part(lambda: dsq.all_dsqs(prog, cpus, tick_hz))
    out["maps"] = _part(lambda: bpfmaps.maps(prog))
    out["exit"] = _part(lambda: scx.exit_info(prog))
    return out


def take(
    prog: drgn.Program,
    cpus: list[int],
    tick_hz: int | None,
    trigger: dict[str, Any],
    run_dir: Path,
    pause: Callable[[], Callable[[], None] | None] | None = None,
) -> dict[str, Any]:
    """Pause the VM (when ``pause`` can: it returns the resume function), collect, resume,
    write the file; returns the dump."""
    started = time.monotonic()
    resume = None
    paused_why = None
    if pause is not None:
        try:
            resume = pause()
        except Exception as err:  # noqa: BLE001 - a dump taken live beats none
            paused_why = f"not paused: {err}"
    try:
        body = collect(prog, cpus, tick_hz, trigger)
    finally:
        if resume is not None:
            resume()
    body["paused"] = resume is not None
    if paused_why or pause is None:
        body["paused_note"] = paused_why or "not paused: the VM has no QMP monitor"
    body["took_s"] = round(time.monotonic() - started, 4)
    write(run_dir, body)
    return body


def write(run_dir: Path, body: dict[str, Any]) -> None:
    """Staged and renamed: a reader never sees half a dump."""
    staged = run_dir / f".{FILE}.tmp"
    staged.write_text(json.dumps(body, indent=1) + "\n")
    staged.replace(run_dir / FILE)
