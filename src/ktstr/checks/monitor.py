"""monitor: what the host saw in the guest kernel, sample by sample, judged for
conditions that last (``monitor.sustain_samples`` samples in a row, 5 by default):

- imbalance: the CPU with the most runnable tasks had ``monitor.max_imbalance_ratio``
  times those of the one with the fewest (floored at 1), while the guest as a whole
  had at least one runnable task per CPU;
- local DSQ depth: a CPU's local dispatch queue held more than ``monitor.max_local_dsq``
  tasks;
- stuck rq clock: a CPU with runnable tasks whose ``rq->clock`` did not advance;
- event rates: ``SCX_EV_SELECT_CPU_FALLBACK`` above ``monitor.max_fallback_rate`` and
  ``SCX_EV_DISPATCH_KEEP_LAST`` above ``monitor.max_keep_last_rate`` per second.

Report-only unless enforced (``monitor.enforce`` = 1, or the run's
``--monitor-enforce``): a condition seen is then a passing finding that says
what was seen.  Each threshold is 0 to turn its condition off.

Reads: ``monitor.series`` (``t``, ``nr_running``, ``local_dsq``, ``clock``, ``events``),
``monitor.enforce``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ktstr.checks.model import FAIL, PASS, SKIP, Finding

CHECK = "monitor"
FALLBACK = "SCX_EV_SELECT_CPU_FALLBACK"
KEEP_LAST = "SCX_EV_DISPATCH_KEEP_LAST"


def _runs(flags: list[bool], need: int) -> Iterator[tuple[int, int]]:
    """(first, last) index of each run of at least ``need`` True values in a row."""
    start = None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= need:
                yield start, i - 1
            start = None


def _imbalance(series: dict, limit: float) -> tuple[list[bool], list[float]]:
    flags, ratios = [], []
    for counts in series["nr_running"]:
        if len(counts) < 2 or sum(counts) < len(counts):
            flags.append(False)
            ratios.append(0.0)
            continue
        ratio = max(counts) / max(min(counts), 1)
        ratios.append(ratio)
        flags.append(ratio > limit)
    return flags, ratios


def _per_cpu(series: dict, key: str) -> list[list[int | None]]:
    """Transpose samples x CPUs into CPUs x samples."""
    rows = series.get(key) or []
    ncpus = max((len(r) for r in rows), default=0)
    return [[r[c] if c < len(r) else None for r in rows] for c in range(ncpus)]


def _stuck(series: dict) -> list[list[bool]]:
    """Per CPU, per sample: had runnable tasks now and before, and the clock did not move."""
    clocks, running = _per_cpu(series, "clock"), _per_cpu(series, "nr_running")
    out = []
    for clock, nr in zip(clocks, running, strict=False):
        flags = [False]
        for i in range(1, len(clock)):
            ran = (nr[i] or 0) > 0 and (nr[i - 1] or 0) > 0
            flags.append(ran and clock[i] is not None and clock[i] == clock[i - 1])
        out.append(flags)
    return out


def event_rates(series: dict, name: str) -> list[float]:
    """Per sample, the counter's rate per second since the previous sample (0 at a reset:
    counters start again with each scheduler)."""
    times, events = series["t"], series.get("events") or []
    out = [0.0]
    for i in range(1, min(len(times), len(events))):
        before, now = events[i - 1].get(name), events[i].get(name)
        dt = times[i] - times[i - 1]
        if before is None or now is None or now < before or dt <= 0:
            out.append(0.0)
        else:
            out.append((now - before) / dt)
    return out


def monitor(record: dict, th: dict) -> list[Finding]:
    mon = record.get("monitor")
    if mon is None:  # a record from before the monitor: nothing to say
        return []
    series = mon.get("series")
    if not series or not series.get("t"):
        why = mon.get("unavailable") or mon.get("stopped") or "the run had no monitor samples"
        return [Finding(CHECK, SKIP, "not_sampled", f"not judged: {why}")]
    need = max(1, int(th["monitor.sustain_samples"]))
    enforce = bool(mon.get("enforce")) or th["monitor.enforce"] >= 1
    times = series["t"]
    seen: list[Finding] = []

    def found(kind: str, message: str, first: int, **extra: object) -> None:
        status = FAIL if enforce else PASS
        text = message if enforce else f"report-only: {message}"
        seen.append(Finding(CHECK, status, kind, text, at_s=times[first], **extra))  # type: ignore[arg-type]

    limit = th["monitor.max_imbalance_ratio"]
    if limit > 0:
        flags, ratios = _imbalance(series, limit)
        for first, last in _runs(flags, need):
            worst = max(ratios[first : last + 1])
            found("imbalanced", f"the busiest CPU had {worst:.1f} times the runnable tasks of the "
                  f"least busy for {last - first + 1} samples in a row (limit {limit:g})", first,
                  value=round(worst, 2), limit=limit)  # fmt: skip
            break
    depth = th["monitor.max_local_dsq"]
    if depth > 0:
        for cpu, nrs in enumerate(_per_cpu(series, "local_dsq")):
            flags = [(n or 0) > depth for n in nrs]
            for first, last in _runs(flags, need):
                worst = max(n or 0 for n in nrs[first : last + 1])
                found("deep_local_dsq", f"CPU {cpu}'s local DSQ held up to {worst} tasks for "
                      f"{last - first + 1} samples in a row (limit {depth:g})", first, cpu=cpu,
                      value=worst, limit=depth)  # fmt: skip
                break
    if th["monitor.check_clock"] >= 1:
        for cpu, flags in enumerate(_stuck(series)):
            for first, last in _runs(flags, need):
                found("rq_clock_stuck", f"CPU {cpu}'s rq clock did not advance for "
                      f"{last - first + 1} samples while it had runnable tasks", first,
                      cpu=cpu)  # fmt: skip
                break
    for name, key, kind in (
        (FALLBACK, "monitor.max_fallback_rate", "fallback_rate"),
        (KEEP_LAST, "monitor.max_keep_last_rate", "keep_last_rate"),
    ):
        rate_limit = th[key]
        if rate_limit <= 0:
            continue
        rates = event_rates(series, name)
        for first, last in _runs([r > rate_limit for r in rates], need):
            worst = max(rates[first : last + 1])
            found(kind, f"{name} rose {worst:.0f}/s for {last - first + 1} samples in a row "
                  f"(limit {rate_limit:g}/s)", first, value=round(worst, 1),
                  limit=rate_limit)  # fmt: skip
            break
    if seen:
        return seen
    mode = "enforced" if enforce else "report-only"
    return [Finding(CHECK, PASS, "ok", f"{len(times)} samples, no condition lasted "
                    f"{need} samples ({mode})")]  # fmt: skip
