"""Printing verifier sweeps: a table per scheduler, rejections, and A/B deltas.

Pure functions of the cells ``sweep`` returns (plain dicts, also the
``--json`` output), so a stored sweep prints the same way.
"""

from __future__ import annotations

from typing import Any

from ktstr.results.terminal import table
from ktstr.text import escape
from ktstr.verifier import log as vlog

REJECTION_LOG_LINES = 60


def column(cell: dict[str, Any], topologies: int) -> str:
    """A cell's column title: its kernel, and its topology when several were swept."""
    return f"{cell['kernel']} @ {cell['topology']}" if topologies > 1 else cell["kernel"]


def _figure(prog: dict[str, Any]) -> str:
    insns = prog.get("verified_insns")
    if insns is None:
        return "?"
    text = f"{insns} ({100 * insns / prog['limit']:.1f}%)"
    extra = [
        f"{prog[k]} {label}"
        for k, label in (("states", "st"), ("peak_states", "peak"))
        if prog.get(k) is not None
    ]
    if prog.get("time_us") is not None:
        extra.append(f"{prog['time_us'] / 1000:.1f} ms")
    text += " " + " ".join(extra) if extra else ""
    return text + (" !" if prog.get("warning") else "")


def _status(cell: dict[str, Any]) -> str:
    if not cell["attached"]:
        return "REJECTED" if cell.get("rejection") else "did not attach"
    return "attached, dispatched" if cell["dispatched"] else "attached, did not dispatch"


def scheduler_table(cells: list[dict[str, Any]]) -> list[str]:
    """One scheduler's cells: programs as rows, kernels (and topologies) as columns."""
    topologies = len({c["topology"] for c in cells})
    head = ["program", "type"] + [column(c, topologies) for c in cells]
    names = sorted({p["name"] for c in cells for p in c["programs"]})
    rows: list[list[str]] = [head, ["status", ""] + [_status(c) for c in cells]]
    for name in names:
        kinds = {p["type"] for c in cells for p in c["programs"] if p["name"] == name}
        row = [name, ",".join(sorted(kinds))]
        for c in cells:
            prog = next((p for p in c["programs"] if p["name"] == name), None)
            row.append(_figure(prog) if prog else "-")
        rows.append(row)
    return table([tuple(escape(v, limit=200) for v in r) for r in rows])


def rejection_lines(cell: dict[str, Any], max_lines: int = REJECTION_LOG_LINES) -> list[str]:
    """Why a cell's scheduler did not load: the first error, the instruction before it,
    then the end of the verifier log with loops collapsed."""
    rej = cell.get("rejection")
    if not rej:
        return []
    out = [
        f"{cell['scheduler']} on {cell['kernel']}: the verifier rejected {rej['program']}: "
        f"{rej['error']}",
        f"  instruction before it: {rej['insn_before'] or '(none in the log)'}",
    ]
    logged = rej.get("log", [])
    if logged:
        shown = logged[-max_lines:]
        cut = len(logged) - len(shown)
        out.append(
            f"  verifier log ({rej['log_bytes']} bytes; loops collapsed"
            + (f"; its first {cut} lines are in the JSON output)" if cut else ")")
        )
        out += [f"    {line}" for line in shown]
    return [escape(line, limit=1000) for line in out]


def warnings(cells: list[dict[str, Any]]) -> list[str]:
    """A line per program at or past 80 % of the complexity limit."""
    return [
        f"warning: {c['scheduler']} {p['name']} on {c['kernel']}: {p['verified_insns']} "
        f"verified instructions, {100 * p['fraction']:.0f}% of the limit {p['limit']}"
        for c in cells
        for p in c["programs"]
        if p.get("warning")
    ]


def sweep_lines(cells: list[dict[str, Any]]) -> list[str]:
    """The whole sweep for a terminal: a table per scheduler, then rejections and warnings."""
    out: list[str] = []
    for name in dict.fromkeys(c["scheduler"] for c in cells):
        mine = [c for c in cells if c["scheduler"] == name]
        out += [f"{name} ({mine[0]['binary']})", *scheduler_table(mine), ""]
    for c in cells:
        out += rejection_lines(c)
        if not c["attached"] and not c.get("rejection"):
            out.append(
                f"{c['scheduler']} on {c['kernel']}: loaded but did not attach; its output and "
                f"the kernel's log are in {c['run_dir']}"
            )
        if c.get("problem"):
            out.append(f"{c['scheduler']} on {c['kernel']}: {escape(c['problem'], limit=300)}")
    out += warnings(cells)
    out.append(
        f"figures: verified instructions (% of the limit, {vlog.LIMIT}), total states, peak "
        f"states, verification time; ! marks {100 * vlog.WARN_FRACTION:.0f}% or more"
    )
    return out


def _delta(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return "-"
    d = b - a
    pct = f" ({100 * d / a:+.1f}%)" if a else ""
    return f"{d:+d}{pct}"


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per program of either cell: A's and B's figures and B minus A."""
    by_a = {p["name"]: p for p in a["programs"]}
    by_b = {p["name"]: p for p in b["programs"]}
    rows = []
    for name in sorted(by_a.keys() | by_b.keys()):
        pa, pb = by_a.get(name, {}), by_b.get(name, {})
        row: dict[str, Any] = {"program": name}
        for key in ("verified_insns", "states", "peak_states", "time_us"):
            va, vb = pa.get(key), pb.get(key)
            row[key] = {"a": va, "b": vb, "delta": None if va is None or vb is None else vb - va}
        rows.append(row)
    return rows


def compare_lines(a: dict[str, Any], b: dict[str, Any], label_a: str, label_b: str) -> list[str]:
    """The per-program deltas of two cells as a table (B minus A)."""
    head = ("program", "insns A", "insns B", "delta", "states delta", "peak delta", "time delta us")
    rows: list[tuple[str, ...]] = [head]
    for row in compare_rows(a, b):
        i, s, p, t = (row[k] for k in ("verified_insns", "states", "peak_states", "time_us"))
        rows.append(
            (
                row["program"],
                "-" if i["a"] is None else str(i["a"]),
                "-" if i["b"] is None else str(i["b"]),
                _delta(i["a"], i["b"]),
                _delta(s["a"], s["b"]),
                _delta(p["a"], p["b"]),
                _delta(t["a"], t["b"]),
            )
        )
    out = [f"A: {label_a} ({_status(a)})", f"B: {label_b} ({_status(b)})"]
    out += table([tuple(escape(v, limit=200) for v in r) for r in rows])
    out += rejection_lines(a) + rejection_lines(b)
    return out
