"""``failure-dump.json`` as text a person reads: what triggered it, what waited where,
the scheduler's maps, and how it exited.

Shared by ``ktstr dump`` and the HTML report.  Every string in the dump
came from guest memory, so each is escaped before it reaches a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ktstr.errors import ConfigError
from ktstr.text import escape

FILE = "failure-dump.json"
MAX_LINES_PER_MAP = 40


def load(run: str | Path) -> dict[str, Any]:
    """The dump of a run directory (or the file itself); one sentence when there is none."""
    path = Path(run)
    if not path.exists():
        raise ConfigError(f"{path} does not exist", "pass a run directory made by 'ktstr run'")
    if path.is_dir():
        path = path / FILE
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: the monitor took no failure dump in that run",
            "a dump is taken when a scheduler fails or a stall develops while the monitor "
            "runs (--monitor-period)",
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{path} is not a readable dump ({err})", "pass a run directory"
        ) from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path} is not a failure dump", "pass a run directory")
    return body


def _task(t: dict[str, Any]) -> str:
    waited = t.get("runnable_for_ms")
    waited_text = f" runnable {waited:.0f} ms" if isinstance(waited, (int, float)) else ""
    dsq = t.get("dsq")
    where = f"dsq {_dsq_id(dsq)}" if dsq is not None else "on no DSQ (held by the BPF scheduler)"
    return (
        f"{t.get('pid')} {escape(str(t.get('comm')))} [{t.get('class')}] {where}"
        f"{waited_text} slice {t.get('slice_ns')} ns vtime {t.get('dsq_vtime')}"
    )


BUILTIN = 1 << 63
LOCAL_ON = 1 << 62
BUILTIN_NAMES = {0: "INVALID", 1: "GLOBAL", 2: "LOCAL", 3: "BYPASS"}  # the kernel's ABI


def _dsq_id(value: object) -> str:
    """A user DSQ's id in decimal; a builtin one (top bit set) by its name."""
    if not isinstance(value, int) or not value & BUILTIN:
        return str(value)
    if value & LOCAL_ON:
        return f"LOCAL_ON|{value & 0xFFFFFFFF}"
    name = BUILTIN_NAMES.get(value & ~BUILTIN)
    return name if name else hex(value)


def _unreadable(part: object) -> str | None:
    if isinstance(part, dict) and "unreadable" in part:
        return f"  (not read: {escape(str(part['unreadable']))})"
    return None


def _items(lines: list[str], title: str, part: object) -> list:
    """Add a section's title (and why it was not read, when it was not); its items."""
    lines.append(title)
    note = _unreadable(part)
    if note:
        lines.append(note)
    return part if isinstance(part, list) else []


def render(body: dict[str, Any]) -> str:
    """The dump as indented text."""
    lines: list[str] = []
    trigger = body.get("trigger") or {}
    lines.append(f"failure dump: {escape(str(trigger.get('reason')))}")
    if trigger.get("comm") is not None:
        lines.append(
            f"  longest waiting: {trigger.get('pid')} {escape(str(trigger.get('comm')))} on "
            f"CPU {trigger.get('cpu')}, {trigger.get('ms', '?')} ms (watchdog timeout "
            f"{trigger.get('watchdog_timeout_jiffies')} jiffies at HZ {body.get('hz')})"
        )
    paused = "paused over QMP" if body.get("paused") else body.get("paused_note", "not paused")
    lines.append(f"  taken at {trigger.get('at_s')} s into sampling, {paused}, "
                 f"read in {body.get('took_s')} s")  # fmt: skip
    scx = body.get("scx")
    if isinstance(scx, dict) and "unreadable" not in scx:
        lines.append("sched_ext: " + ", ".join(f"{k}={escape(str(v))}" for k, v in scx.items()))
    for c in _items(lines, "CPUs:", body.get("cpus")):
        lines.append(
            f"  CPU {c.get('cpu')}: nr_running {c.get('nr_running')} scx {c.get('scx_nr_running')}"
            f" local_dsq {c.get('local_dsq_nr')} curr {c.get('curr_pid')} "
            f"{escape(str(c.get('curr_comm')))} [{c.get('curr_class')}]"
        )
    runnable = body.get("runnable") or {}
    if runnable:
        lines.append("runnable sched_ext tasks per CPU (longest waiting first):")
        for cpu, tasks in runnable.items():
            note = _unreadable(tasks)
            if note:
                lines.append(f"  CPU {cpu}:{note}")
                continue
            lines.append(f"  CPU {cpu}: {len(tasks)} task(s)")
            lines.extend(f"    {_task(t)}" for t in tasks)
    if body.get("dsqs") is not None:
        for d in _items(lines, "dispatch queues:", body["dsqs"]):
            where = {"local": f" CPU {d.get('cpu')}", "global": f" node {d.get('node')}"}.get(
                d.get("kind"), ""
            )
            lines.append(f"  {d.get('kind')}{where} dsq {_dsq_id(d.get('id'))}: {d.get('nr')} "
                         "queued")  # fmt: skip
            lines.extend(f"    {_task(t)}" for t in d.get("tasks") or [])
    if body.get("maps") is not None:
        for m in _items(lines, "BPF maps of the scheduler:", body["maps"]):
            lines.append(
                f"  {escape(str(m.get('name')))} (id {m.get('id')}, {m.get('type')}, key "
                f"{m.get('key_size')} B, value {m.get('value_size')} B, max "
                f"{m.get('max_entries')})"
            )
            shown = m.get("variables", m.get("entries"))
            if shown is None:
                lines.append(f"    {escape(str(m.get('entries_not_read', '')))}")
                continue
            text = json.dumps(shown, indent=1, default=str).splitlines()
            more = len(text) - MAX_LINES_PER_MAP
            lines.extend(f"    {escape(line)}" for line in text[:MAX_LINES_PER_MAP])
            if more > 0:
                lines.append(f"    ... {more} more lines in the file")
    exit_info = body.get("exit")
    if isinstance(exit_info, dict) and "kind" in exit_info:
        lines.append(
            f"scheduler exit: {exit_info.get('kind')} ({escape(str(exit_info.get('reason')))})"
        )
        if exit_info.get("msg"):
            lines.append(f"  {escape(str(exit_info['msg']))}")
        if exit_info.get("dump"):
            lines.append("  the kernel's debug dump:")
            lines.extend(f"    {escape(line)}" for line in str(exit_info["dump"]).splitlines())
    return "\n".join(line for line in lines if line != "")
