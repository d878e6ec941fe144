"""Reading the BPF verifier's log: its statistics, and why it rejected a program.

With ``BPF_LOG_STATS`` the verifier ends every log with lines such as::

    verification time 1523 usec
    stack depth 16+0 max 16
    processed 412 insns (limit 1000000) max_states_per_insn 2 total_states 37 ...

A rejection's log (``BPF_LOG_LEVEL1``) walks the instructions and ends with
the error just before those lines. Loops the verifier unrolled repeat the
same instructions many times; ``collapse`` prints such a cycle once with
its count.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

LIMIT = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS
WARN_FRACTION = 0.8

_PROCESSED = re.compile(
    r"processed (\d+) insns \(limit (\d+)\) max_states_per_insn (\d+) "
    r"total_states (\d+) peak_states (\d+)"
)
_TIME = re.compile(r"verification time (\d+) usec")
_STACK = re.compile(r"stack depth ([\d+]+)(?: max (\d+))?")
_INSN = re.compile(r"^(\d+): \([0-9a-f]{2}\) ")
_STATE = re.compile(r"^(\d+: (?:R\d|frame|fp)|from \d+ to \d+:)")
_STATS_LINE = re.compile(r"^(verification time |stack depth |insns processed |processed \d+ insns)")
_INSN_STATE = re.compile(r"\s+; (?:R\d|frame|fp-).*$")
MAX_PERIOD = 256


@dataclass(frozen=True)
class Stats:
    """The verifier's figures for one program (None: the log did not say)."""

    processed: int | None = None
    limit: int = LIMIT
    max_states_per_insn: int | None = None
    total_states: int | None = None
    peak_states: int | None = None
    time_us: int | None = None
    stack_depth: int | None = None


def stats(log: str) -> Stats:
    """The statistics lines of a log (the last of each, as a retry may log twice)."""
    processed = _PROCESSED.findall(log)
    times = _TIME.findall(log)
    stacks = _STACK.findall(log)
    p = [int(v) for v in processed[-1]] if processed else [None, LIMIT, None, None, None]
    depth = None
    if stacks:
        total, biggest = stacks[-1]
        depth = int(biggest) if biggest else sum(int(d) for d in total.split("+") if d)
    return Stats(
        processed=p[0],
        limit=p[1] or LIMIT,
        max_states_per_insn=p[2],
        total_states=p[3],
        peak_states=p[4],
        time_us=int(times[-1]) if times else None,
        stack_depth=depth,
    )


@dataclass(frozen=True)
class Rejection:
    """Why the verifier refused a program: its first error and the instruction before it."""

    error: str
    insn_before: str | None


def rejection(log: str, errno: int) -> Rejection:
    """The error of a rejected program's log; the errno's name when the log says nothing."""
    lines = log.splitlines()
    end = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        if _STATS_LINE.match(lines[i]):
            end = i
        elif lines[i].strip():
            break
    block: list[str] = []
    insn = None
    for line in reversed(lines[:end]):
        if _INSN.match(line):
            insn = _INSN_STATE.sub("", line).rstrip()
            break
        block.append(line)
    block.reverse()
    errors = [
        ln.strip()
        for ln in block
        if ln.strip()
        and not ln.startswith(";")
        and not _STATE.match(ln)
        and not ln.startswith("...")
    ]
    if errors:
        return Rejection(errors[0], insn)
    cause = os.strerror(errno) if errno else "no reason given"
    return Rejection(f"the kernel refused the program: {cause} (errno {errno})", insn)


def _key(line: str) -> str:
    """What stays the same in one more turn of a loop: the instruction, not its registers."""
    if _INSN.match(line):
        return _INSN_STATE.sub("", line).rstrip()
    state = _STATE.match(line)
    return state.group(1) if state else line


def collapse(lines: list[str], max_period: int = MAX_PERIOD) -> list[str]:
    """``lines`` with each run of a repeated cycle of lines printed once, then its count.

    Two turns of a loop match when their instructions do (register values may differ);
    the longest run wins, then the shortest cycle.
    """
    ids: dict[str, int] = {}
    keys = [ids.setdefault(_key(ln), len(ids)) for ln in lines]
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        covered, period = 0, 0
        for p in range(1, min(max_period, (n - i) // 2) + 1):
            if keys[i + p] != keys[i]:
                continue
            j = i
            while j + p < n and keys[j] == keys[j + p]:
                j += 1
            turns = (j - i) // p + 1
            if turns >= 2 and turns * p > covered:
                covered, period = turns * p, p
        if covered:
            turns = covered // period
            out.extend(lines[i : i + period])
            what = "line" if period == 1 else f"{period} lines"
            out.append(f"... the {what} above repeated {turns - 1} more times")
            i += covered
        else:
            out.append(lines[i])
            i += 1
    return out
