"""Each payload's evidence: its output kept beside the record, how it ended, its metrics.

The output is the guest's and untrusted: each stream is bounded here as
well as in the guest, and the parser never raises on it.  Output the
parser cannot read keeps its first lines in the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ktstr import wire
from ktstr.payloads.parse import head, parse

MAX_STREAM_CHARS = 1 << 20  # per payload and stream, kept on the host


def _streams(messages: list[dict[str, Any]]) -> dict[int, dict[str, list[str]]]:
    """Payload id -> stream -> its chunks, in order, bounded."""
    out: dict[int, dict[str, list[str]]] = {}
    sizes: dict[tuple[int, str], int] = {}
    for m in messages:
        if m["kind"] != wire.PAYLOAD_OUTPUT or m["stream"] not in ("stdout", "stderr"):
            continue
        key = (m["id"], m["stream"])
        room = MAX_STREAM_CHARS - sizes.get(key, 0)
        if room <= 0:
            continue
        chunk = m["data"][:room]
        sizes[key] = sizes.get(key, 0) + len(chunk)
        out.setdefault(m["id"], {}).setdefault(m["stream"], []).append(chunk)
    return out


def _ends(messages: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {m["id"]: m for m in messages if m["kind"] == wire.PAYLOAD_END}


def _started(messages: list[dict[str, Any]]) -> dict[int, float]:
    return {
        m["payload"]: m["at_s"]
        for m in messages
        if m["kind"] == wire.EVENT and m.get("op") == "run_payload" and "payload" in m
    }


def payload_records(
    plan: dict[str, Any], messages: list[dict[str, Any]], run_dir: Path
) -> list[dict[str, Any]]:
    """One entry per planned payload; writes ``payload-<id>-<name>.stdout/.stderr``."""
    streams, ends, started = _streams(messages), _ends(messages), _started(messages)
    out = []
    for entry in plan.get("payloads", []):
        pid = entry["id"]
        text = {s: "".join(streams.get(pid, {}).get(s, [])) for s in ("stdout", "stderr")}
        record: dict[str, Any] = {
            k: entry[k] for k in ("id", "name", "cgroup", "payload", "program", "args")
        }
        record["expect_exit"] = entry["parser"].get("expect_exit")
        record["bounds"] = {
            m["name"]: [m.get("min"), m.get("max")]
            for m in entry["parser"]["metrics"]
            if m.get("min") is not None or m.get("max") is not None
        }
        for stream, data in text.items():
            if data:
                path = run_dir / f"payload-{pid}-{entry['name']}.{stream}"
                path.write_text(data, errors="replace")
                record[f"{stream}_file"] = path.name
        if pid in started:
            record["started_s"] = started[pid]
        end = ends.get(pid)
        record["ended"] = end is not None
        if end is not None:
            for key in ("at_s", "elapsed_s", "code", "signal", "stopped_by", "dropped"):
                if end.get(key) is not None:
                    record["ended_s" if key == "at_s" else key] = end[key]
        values, problem = parse(entry["parser"], text["stdout"], text["stderr"])
        units = {m["name"]: m for m in entry["parser"]["metrics"]}
        record["metrics"] = {
            name: {
                "value": value,
                "unit": units[name].get("unit", ""),
                "higher_is_better": bool(units[name].get("higher_is_better", True)),
            }
            for name, value in values.items()
        }
        if problem:
            record["parse_problem"] = problem
            stream = entry["parser"].get("stream", "stdout")
            shown = text.get(stream) or text["stdout"] + text["stderr"]
            record["head"] = head(shown)
        out.append(record)
    return out
