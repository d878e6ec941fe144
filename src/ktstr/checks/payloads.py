"""The payloads' own verdicts: exit status, numbers that could be read, metric bounds.

Reads: ``payloads[]`` (record/payloads.py).  A payload ktstr stopped (at
the end, by ``kill_payload`` or by removing its cgroup) is not judged on
its exit status; if it was to print numbers, their absence is
inconclusive, as is output the parser cannot read.
"""

from __future__ import annotations

from ktstr.checks.model import FAIL, INCONCLUSIVE, PASS, Finding

CHECK = "payloads"


def _label(p: dict) -> str:
    return f"payload {p['name']} in {p['cgroup']}"


def _output(p: dict) -> str:
    files = [p[k] for k in ("stderr_file", "stdout_file") if p.get(k)]
    return f" (output in {', '.join(files)})" if files else " (it printed nothing)"


def _bounds(p: dict) -> list[Finding]:
    out = []
    for name, (lo, hi) in (p.get("bounds") or {}).items():
        metric = (p.get("metrics") or {}).get(name)
        if metric is None:
            continue
        value, unit = metric["value"], metric.get("unit", "")
        for limit, beyond, word in (
            (lo, lo is not None and value < lo, "below the minimum"),
            (hi, hi is not None and value > hi, "above the maximum"),
        ):
            if beyond:
                out.append(
                    Finding(
                        CHECK,
                        FAIL,
                        "metric_bound",
                        f"{_label(p)}: {name} {value:g} {unit} is {word} {limit:g}".replace(
                            "  ", " "
                        ),
                        cgroup=p["cgroup"],
                        value=value,
                        limit=limit,
                    )
                )
    return out


def _one(p: dict) -> list[Finding]:
    label = _label(p)
    if not p.get("ended"):
        return [
            Finding(
                CHECK,
                INCONCLUSIVE,
                "no_end",
                f"{label} never reported its end (the VM stopped first)",
                cgroup=p["cgroup"],
            )
        ]
    stopped = p.get("stopped_by")
    wanted = p.get("expect_exit")
    if not stopped and wanted is not None and p.get("code") != wanted:
        how = f"was killed by signal {p['signal']}" if "signal" in p else f"exited {p.get('code')}"
        return [
            Finding(
                CHECK,
                FAIL,
                "exit_status",
                f"{label} {how}, expected exit {wanted}{_output(p)}",
                cgroup=p["cgroup"],
                value=p.get("code"),
                limit=wanted,
            )
        ]
    if p.get("parse_problem"):
        if stopped:
            why = (
                f"was stopped ({stopped}) before it printed its numbers: "
                "give it less work or the scenario more time"
            )
        else:
            why = f"printed output ktstr cannot read: {p['parse_problem']}"
        return [
            Finding(
                CHECK, INCONCLUSIVE, "unparsed", f"{label} {why}{_output(p)}", cgroup=p["cgroup"]
            )
        ]
    bounds = _bounds(p)
    if bounds:
        return bounds
    numbers = ", ".join(
        f"{k} {m['value']:g}{(' ' + m['unit']) if m.get('unit') else ''}"
        for k, m in (p.get("metrics") or {}).items()
    )
    how = f"stopped by {stopped}" if stopped else f"exit {p.get('code')}"
    return [
        Finding(
            CHECK,
            PASS,
            "ok",
            f"{label}: {how}" + (f"; {numbers}" if numbers else ""),
            cgroup=p["cgroup"],
        )
    ]


def payloads(record: dict, th: dict) -> list[Finding]:
    """Every payload judged on its own."""
    return [f for p in record.get("payloads") or [] for f in _one(p)]
