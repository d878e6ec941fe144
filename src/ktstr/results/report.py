"""Reports people would rather look at than read: one self-contained HTML file
(plots embedded as PNG), or Markdown with the plots as files for CI summaries.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from ktstr.checks.monitor import event_rates  # noqa: E402
from ktstr.results.terminal import (  # noqa: E402
    bug_summary,
    cgroup_table,
    disk_table,
    payload_table,
)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def utilization_heatmap(record: dict) -> bytes | None:
    timeline = record.get("timeline", [])
    cpus = sorted({int(c) for s in timeline for c in s.get("util", {})})
    samples = [s for s in timeline if s.get("util")]
    if not cpus or not samples:
        return None
    grid = [[s["util"].get(str(c), 0.0) for s in samples] for c in cpus]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(cpus) + 1.5))
    extent = (samples[0]["at_s"], samples[-1]["at_s"], len(cpus) - 0.5, -0.5)
    image = ax.imshow(
        grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, extent=extent, interpolation="nearest"
    )
    ax.set_yticks(range(len(cpus)), [f"cpu {c}" for c in cpus])
    ax.set_xlabel("seconds into the scenario")
    ax.set_title("per-CPU utilization")
    fig.colorbar(image, ax=ax, label="busy fraction")
    return _png(fig)


def cgroup_share_vs_weight(record: dict) -> bytes | None:
    weights = {}
    for ev in record.get("events", []):
        if ev.get("op") in ("add_cgroup", "set_weight") and ev.get("weight"):
            weights[ev["path"]] = ev["weight"]
    cpu: dict[str, float] = defaultdict(float)
    for w in record.get("workers", []):
        cpu[w.get("cgroup_path", "?")] += w.get("cpu_time_ns", 0) / 1e9
    total = sum(cpu.values())
    if not total:
        return None
    names = sorted(cpu)
    fig, ax = plt.subplots(figsize=(8, 3))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [cpu[n] / total for n in names], 0.4, label="CPU share")
    wsum = sum(weights.get(n, 100) for n in names)
    ax.bar(
        [x + 0.2 for x in xs],
        [weights.get(n, 100) / wsum for n in names],
        0.4,
        label="cpu.weight share",
        alpha=0.6,
    )
    ax.set_xticks(list(xs), names, rotation=20)
    ax.set_ylabel("fraction")
    ax.set_title("per-cgroup CPU share vs weight")
    ax.legend()
    return _png(fig)


def worker_gaps_and_wakes(record: dict) -> bytes | None:
    workers = record.get("workers", [])
    if not workers:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
    labels = [f"w{w['id']}" for w in workers]
    gaps = [max((g[0] for g in w.get("gaps", [])), default=0) * 1000 for w in workers]
    left.bar(labels, gaps, color="tab:orange")
    left.set_title("longest gap between progress stamps")
    left.set_xlabel("worker")
    left.set_ylabel("ms")
    wakes = [(w["id"], w["wake"]) for w in workers if w.get("wake")]
    if wakes:
        xs = range(len(wakes))
        for offset, key in ((-0.25, "p50_us"), (0, "p99_us"), (0.25, "max_us")):
            right.bar([x + offset for x in xs], [wk[key] for _, wk in wakes], 0.25, label=key[:-3])
        right.set_xticks(list(xs), [f"w{i}" for i, _ in wakes])
        right.set_yscale("log")
        right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    right.set_title("wake latency")
    right.set_xlabel("worker")
    right.set_ylabel("µs")
    return _png(fig)


def worker_progress(record: dict) -> bytes | None:
    """Work units over time per worker: a flat stretch is a stall."""
    workers = [w for w in record.get("workers", []) if len(w.get("progress", [])) > 1]
    if not workers:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for w in workers:
        xs, ys = [p[0] for p in w["progress"]], [p[1] for p in w["progress"]]
        ax.plot(xs, ys, label=f"w{w['id']} ({w.get('cgroup_path', '?')})", linewidth=1.2)
    ax.set_xlabel("seconds into the scenario")
    ax.set_ylabel("work units")
    ax.set_title("per-worker progress (flat lines are stalls)")
    if len(workers) <= 12:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def wake_cdfs(record: dict) -> bytes | None:
    workers = [w for w in record.get("workers", []) if (w.get("wake") or {}).get("cdf_us")]
    if not workers:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for w in workers:
        cdf = w["wake"]["cdf_us"]
        ax.plot(
            cdf,
            [i / (len(cdf) - 1) for i in range(len(cdf))],
            label=f"w{w['id']} ({w.get('work', '?')})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("wake latency (µs)")
    ax.set_ylabel("fraction of wakeups")
    ax.set_title("wake latency CDF")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def disk_rates(record: dict) -> bytes | None:
    """Per disk: completed reads, writes and flushes per second, and requests in flight."""
    series: dict[str, list[tuple[float, list[int]]]] = {}
    for sample in record.get("timeline", []):
        for name, values in (sample.get("disks") or {}).items():
            if values:
                series.setdefault(name, []).append((sample["at_s"], values))
    series = {n: v for n, v in series.items() if len(v) > 1}
    if not series:
        return None
    fig, (rate, queue) = plt.subplots(2, 1, figsize=(8, 4.4), sharex=True)
    for name, points in sorted(series.items()):
        pairs = list(zip(points[:-1], points[1:], strict=True))
        xs = [b[0] for _, b in pairs]
        for i, what in enumerate(("reads", "writes", "flushes")):
            ys = [(b[1][i] - a[1][i]) / max(1e-9, b[0] - a[0]) for a, b in pairs]
            if any(ys):
                rate.plot(xs, ys, label=f"{name} {what}", linewidth=1.2)
        queue.plot([p[0] for p in points], [p[1][3] for p in points], label=name)
    rate.set_ylabel("per second")
    rate.set_title("disk requests completed (guest block layer)")
    rate.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    queue.set_ylabel("in flight")
    queue.set_xlabel("seconds into the scenario")
    return _png(fig)


PLOTS = {
    "utilization": utilization_heatmap,
    "progress": worker_progress,
    "cgroups": cgroup_share_vs_weight,
    "workers": worker_gaps_and_wakes,
    "wake_cdf": wake_cdfs,
    "disks": disk_rates,
}


def _monitor_series(record: dict) -> dict | None:
    series = (record.get("monitor") or {}).get("series")
    return series if series and series.get("t") else None


def monitor_runnable_heatmap(record: dict) -> bytes | None:
    """Runnable tasks per CPU as the host-side monitor read them, sample by sample."""
    series = _monitor_series(record)
    if series is None:
        return None
    rows = series["nr_running"]
    ncpus = max(len(r) for r in rows)
    grid = [[r[c] if c < len(r) else 0 for r in rows] for c in range(ncpus)]
    fig, ax = plt.subplots(figsize=(8, 0.35 * ncpus + 1.5))
    t = series["t"]
    image = ax.imshow(grid, aspect="auto", cmap="magma", extent=(t[0], t[-1], ncpus - 0.5, -0.5),
                      interpolation="nearest")  # fmt: skip
    ax.set_yticks(range(ncpus), [f"cpu {c}" for c in range(ncpus)])
    ax.set_xlabel("seconds into sampling")
    ax.set_title("runnable tasks per CPU (host-side monitor)")
    fig.colorbar(image, ax=ax, label="nr_running")
    return _png(fig)


def monitor_dsq_depths(record: dict) -> bytes | None:
    """Each user DSQ's depth, and the deepest local DSQ, over time."""
    series = _monitor_series(record)
    if series is None:
        return None
    t = series["t"]
    ids = sorted({k for d in series.get("dsqs") or [] for k in d}, key=lambda k: int(k))
    local = [max((n or 0 for n in row), default=0) for row in series.get("local_dsq") or []]
    if not ids and not any(local):
        return None
    fig, ax = plt.subplots(figsize=(8, 3))
    for key in ids[:12]:
        ax.plot(t, [d.get(key, 0) for d in series["dsqs"]], label=f"dsq {key}")
    if local:
        ax.plot(t[: len(local)], local, "--", label="deepest local DSQ")
    ax.set_xlabel("seconds into sampling")
    ax.set_ylabel("tasks queued")
    ax.set_title("dispatch queue depths")
    ax.legend(fontsize="small")
    return _png(fig)


def monitor_event_rates(record: dict) -> bytes | None:
    """sched_ext event counters as rates per second between samples."""
    series = _monitor_series(record)
    events = (series or {}).get("events") or []
    names = sorted({k for e in events for k in e})
    if series is None or not names:
        return None
    t = series["t"]
    fig, ax = plt.subplots(figsize=(8, 3))
    for name in names:
        rates = event_rates(series, name)
        ax.plot(t[: len(rates)], rates, label=name.removeprefix("SCX_EV_").lower())
    ax.set_xlabel("seconds into sampling")
    ax.set_ylabel("events per second")
    ax.set_title("sched_ext event rates")
    ax.legend(fontsize="small")
    return _png(fig)


PLOTS.update(
    monitor_runnable=monitor_runnable_heatmap,
    monitor_dsqs=monitor_dsq_depths,
    monitor_events=monitor_event_rates,
)


def plots(record: dict) -> dict[str, bytes]:
    out = {}
    for name, fn in PLOTS.items():
        data = fn(record)
        if data:
            out[name] = data
    return out


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:.9em}
.pass{color:#176f2c;font-weight:bold} .fail{color:#b00020;font-weight:bold}
.inconclusive,.skip{color:#8a6d00;font-weight:bold} pre{background:#f6f6f6;padding:1em}
.bug{background:#fdecea;border-left:4px solid #b00020;padding:.6em 1em}"""


def _findings_table(record: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f['check'])}</td><td class='{f['status']}'>{f['status']}</td>"
        f"<td>{html.escape(f['kind'])}</td><td>{html.escape(f['message'])}</td></tr>"
        for f in record.get("findings", [])
    )
    return (
        f"<table><tr><th>check</th><th>status</th><th>kind</th><th>message</th></tr>{rows}</table>"
    )


def run_section(record: dict, images: dict[str, str]) -> str:
    verdict = record.get("verdict", "?")
    sched = record.get("scheduler")
    sched_name = sched.get("name") if isinstance(sched, dict) else sched
    bug = bug_summary(record)
    parts = [
        f"<h2>{html.escape(str(record.get('scenario')))} on "
        f"{html.escape(str(record.get('topology')))} under {html.escape(str(sched_name))}: "
        f"<span class='{verdict}'>{verdict.upper()}</span></h2>",
        f"<p class='bug'>{html.escape(bug)}</p>" if bug else "",
        _findings_table(record),
        f"<pre>{html.escape(cgroup_table(record))}</pre>",
    ]
    for extra in (disk_table(record), payload_table(record)):
        if extra:
            parts.append(f"<pre>{html.escape(extra)}</pre>")
    parts += [f"<p><img alt='{name}' src='{src}'></p>" for name, src in images.items()]
    if record.get("_failure_dump"):
        parts.append(f"<h3>failure dump</h3><pre>{html.escape(record['_failure_dump'])}</pre>")
    return "\n".join(parts)


def html_report(records: list[dict], title: str = "ktstr report") -> str:
    sections = []
    for record in records:
        images = {
            n: "data:image/png;base64," + base64.b64encode(d).decode()
            for n, d in plots(record).items()
        }
        sections.append(run_section(record, images))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def markdown_report(records: list[dict], out: Path) -> Path:
    """``out`` is the .md file; plots go next to it as PNG files."""
    lines = ["# ktstr report", ""]
    for index, record in enumerate(records):
        bug = bug_summary(record)
        lines += [
            f"## {record.get('scenario')} on {record.get('topology')}: "
            f"**{record.get('verdict', '?').upper()}**",
            "",
        ]
        if bug:
            lines += [f"> {bug}", ""]
        lines += ["| check | status | kind | message |", "|---|---|---|---|"]
        lines += [
            f"| {f['check']} | {f['status']} | {f['kind']} | {f['message'].replace('|', '/')} |"
            for f in record.get("findings", [])
        ]
        lines += ["", "```", cgroup_table(record), "```", ""]
        for extra in (disk_table(record), payload_table(record)):
            if extra:
                lines += ["```", extra, "```", ""]
        for name, data in plots(record).items():
            image = out.with_name(f"{out.stem}-{index}-{name}.png")
            image.write_bytes(data)
            lines += [f"![{name}]({image.name})", ""]
    out.write_text("\n".join(lines) + "\n")
    return out


def compare_figure(rows) -> bytes | None:
    """Side-by-side bars with 95 % intervals, one panel per metric (first 12)."""
    rows = list(rows)[:12]
    if not rows:
        return None
    cols = 3
    fig, axes = plt.subplots(
        (len(rows) + cols - 1) // cols,
        cols,
        figsize=(11, 2.6 * ((len(rows) + cols - 1) // cols)),
        squeeze=False,
    )
    for ax, r in zip(axes.flat, rows, strict=False):
        color = {"regression": "tab:red", "better": "tab:green"}.get(r.verdict, "tab:blue")
        ax.bar(
            ["A", "B"],
            [r.a_mean, r.b_mean],
            yerr=[r.a_ci, r.b_ci],
            capsize=4,
            color=["tab:gray", color],
        )
        ax.set_title(f"{r.metric} ({r.verdict}, p={r.p:.2f})", fontsize=9)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def compare_html(rows, a_label: str, b_label: str) -> str:
    figure = compare_figure(rows)
    table = "".join(
        f"<tr><td>{html.escape(r.group)}</td><td>{r.metric}</td><td>{r.a_mean:.4g} "
        f"±{r.a_ci:.2g}</td><td>{r.b_mean:.4g} ±{r.b_ci:.2g}</td><td>{r.delta:+.4g}</td>"
        f"<td>{r.p:.3f}</td><td>{r.verdict}</td></tr>"
        for r in rows
    )
    img = (
        (
            "<p><img alt='comparison' src='data:image/png;base64,"
            + base64.b64encode(figure).decode()
            + "'></p>"
        )
        if figure
        else ""
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ktstr compare</title>"
        f"<style>{_STYLE}</style></head><body><h1>A: {html.escape(a_label)} vs B: "
        f"{html.escape(b_label)}</h1><table><tr><th>group</th><th>metric</th><th>A</th>"
        f"<th>B</th><th>delta</th><th>p</th><th>verdict</th></tr>{table}</table>{img}"
        "</body></html>\n"
    )
