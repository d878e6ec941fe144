"""A payload's output -> its metrics, on the host.

The output comes from the guest, which is untrusted: it is bounded before
parsing, and no input makes a parser raise.  What cannot be read is a
problem string (the run is then inconclusive), never an exception.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from typing import Any

MAX_PARSE_CHARS = 4 << 20  # output beyond this is not parsed
MAX_MATCHES = 100_000
HEAD_LINES = 20

_AGGREGATE = {
    "first": lambda xs: xs[0],
    "last": lambda xs: xs[-1],
    "sum": sum,
    "mean": statistics.fmean,
    "min": min,
    "max": max,
}


def head(text: str, lines: int = HEAD_LINES) -> list[str]:
    """The first lines of an output, each bounded: what a user sees of unreadable output."""
    return [line[:500] for line in text.splitlines()[:lines]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def select(doc: Any, path: str) -> list[float]:
    """Every number at ``path`` (keys split by ``/``; ``*`` is every item) in ``doc``."""
    nodes = [doc]
    for key in [k for k in path.split("/") if k]:
        following = []
        for node in nodes:
            if key == "*" and isinstance(node, (dict, list)):
                following += list(node.values() if isinstance(node, dict) else node)[:MAX_MATCHES]
            elif isinstance(node, dict) and key in node:
                following.append(node[key])
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                following.append(node[int(key)])
        nodes = [n for n in following if isinstance(n, (dict, list)) or _number(n) is not None]
    return [x for x in (_number(n) for n in nodes) if x is not None]


def json_document(text: str) -> tuple[Any, str | None]:
    """The first JSON object or array in ``text`` (programs print warnings before it)."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None, "no JSON document in the output"
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except RecursionError:
        return None, "the JSON document is nested too deeply"
    except ValueError as err:
        return None, f"the JSON document is invalid ({err})"
    return doc, None


def stress_ng_document(text: str) -> tuple[Any, str | None]:
    """stress-ng's ``--yaml`` report -> ``{"metrics": {stressor: {key: value}}}``.

    Only the ``metrics:`` section is read: a list of ``- stressor: NAME`` items
    with ``key: value`` lines below each; other lines are ignored.
    """
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "metrics:")
    except StopIteration:
        return None, "no 'metrics:' section in stress-ng's YAML output"
    stressors: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if line and not line[0].isspace() or stripped == "...":
            break  # the next top-level key, or the document's end
        key, sep, value = stripped.removeprefix("- ").partition(":")
        if not sep:
            continue
        if stripped.startswith("- ") and key == "stressor":
            current = stressors.setdefault(value.strip(), {})
        elif current is not None:
            current[key.strip()] = value.strip().strip("'\"")
    if not stressors:
        return None, "stress-ng's YAML output lists no stressor"
    return {"metrics": stressors}, None


def _regex(text: str, pattern: str) -> list[float]:
    found = []
    for match in re.finditer(pattern, text, re.MULTILINE):
        value = _number(match.group(1))
        if value is not None:
            found.append(value)
        if len(found) >= MAX_MATCHES:
            break
    return found


def parse(parser: dict, stdout: str, stderr: str) -> tuple[dict[str, float], str | None]:
    """``parser`` (``Payload.parser_wire()``) over the output -> (metrics, problem or None).

    A metric the output does not contain is a problem; metrics found are kept.
    """
    stream = parser.get("stream", "stdout")
    text = {"stdout": stdout, "stderr": stderr}.get(stream, stdout + "\n" + stderr)
    text = text[:MAX_PARSE_CHARS]
    fmt = parser.get("output", "exit")
    metrics = parser.get("metrics") or []
    if fmt == "exit" or not metrics:
        return {}, None
    doc, problem = None, None
    if fmt == "json":
        doc, problem = json_document(text)
    elif fmt == "stress-ng":
        doc, problem = stress_ng_document(text)
    if problem:
        return {}, problem
    values: dict[str, float] = {}
    missing = []
    for metric in metrics:
        try:
            found = (
                _regex(text, metric["source"]) if fmt == "regex" else select(doc, metric["source"])
            )
            value = _AGGREGATE[metric.get("aggregate", "last")](found) if found else None
        except (re.error, KeyError, TypeError, ValueError, OverflowError):
            value = None
        if value is None or not math.isfinite(value):
            missing.append(metric["name"])
        else:
            values[metric["name"]] = float(value)
    if missing:
        problem = f"the {stream} has no value for {', '.join(missing)}"
    return values, problem
