"""Plain text for a run: the BUG SUMMARY line, the verdict per check, per-cgroup statistics."""

from __future__ import annotations

from collections import defaultdict

from ktstr.checks.disks import host_failed
from ktstr.text import escape

# Causes before consequences: a scheduler's ejection explains the stuck workers after it.
_SUMMARY_ORDER = ("scheduler", "kernel_health", "vm", "expect")


def bug_summary(record: dict) -> str | None:
    """One line naming the failure that most likely caused the rest."""
    failed = [f for f in record.get("findings", []) if f["status"] == "fail"]
    if not failed:
        return None

    def rank(f: dict) -> int:
        return _SUMMARY_ORDER.index(f["check"]) if f["check"] in _SUMMARY_ORDER else 99

    first = min(failed, key=rank)
    return escape(f"BUG SUMMARY: [{first['check']}/{first['kind']}] {first['message']}")


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Aligned columns with a rule under the header row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _num(value: object, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def verdict_table(record: dict) -> str:
    """One row per check: status, worst value, limit; then the failing findings."""
    rows = [("check", "status", "worst", "limit", "detail")]
    by_check: dict[str, list[dict]] = defaultdict(list)
    for f in record.get("findings", []):
        by_check[f["check"]].append(f)
    order = {"fail": 0, "inconclusive": 1, "pass": 2, "skip": 3}
    for check, findings in by_check.items():
        worst = min(findings, key=lambda f: order.get(f["status"], 9))
        rows.append(
            (
                check,
                worst["status"].upper(),
                _num(worst.get("value"), "{:g}"),
                _num(worst.get("limit"), "{:g}"),
                worst["message"][:90],
            )
        )
    lines = [
        f"scenario {record.get('scenario')} on {record.get('topology')}: "
        f"{record.get('verdict', '?').upper()}",
        "",
    ]
    lines += table(rows)
    failing = [f for f in record.get("findings", []) if f["status"] == "fail"]
    if failing:
        lines += ["", "findings:"] + [
            f"  - [{f['check']}/{f['kind']}] {f['message']}" for f in failing
        ]
    return "\n".join(lines)


def cgroup_table(record: dict) -> str:
    """Per cgroup: workers, work rate, CPU share, longest gap, migrations, p99 wake or I/O."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for w in record.get("workers", []):
        groups[w.get("cgroup_path", "?")].append(w)
    if not groups:
        return ""
    rows = [
        (
            "cgroup",
            "workers",
            "kind",
            "units/s",
            "cpu share",
            "max gap ms",
            "migrations",
            "p99 wake/io us",
        )
    ]
    for path, ws in sorted(groups.items()):
        walls = [max(1e-9, w.get("end_s", 0) - w.get("start_s", 0)) for w in ws]
        rate = sum(w.get("units", 0) / wall for w, wall in zip(ws, walls, strict=True)) / len(ws)
        share = sum(
            w.get("cpu_time_ns", 0) / 1e9 / wall for w, wall in zip(ws, walls, strict=True)
        ) / len(ws)
        gap = max((g[0] for w in ws for g in w.get("gaps", [])), default=0) * 1000
        wakes = [w["wake"]["p99_us"] for w in ws if w.get("wake")]
        wakes += [w["io"]["lat_us"]["p99"] for w in ws if (w.get("io") or {}).get("lat_us")]
        rows.append(
            (
                path,
                str(len(ws)),
                ",".join(sorted({w.get("work", "?") for w in ws})),
                f"{rate:.0f}",
                f"{share:.0%}",
                f"{gap:.0f}",
                str(sum(w.get("migrations", 0) for w in ws)),
                f"{max(wakes):.0f}" if wakes else "-",
            )
        )
    return "\n".join(table(rows))


def disk_table(record: dict) -> str:
    """Per disk: what the guest's block layer and QEMU each counted since boot, worker IOPS."""
    disks = record.get("disks") or []
    if not disks:
        return ""
    rows = [
        ("disk", "capacity", "limit", "guest r/w/flush", "qemu r/w/flush", "iops", "errors w/q")
    ]
    for d in disks:
        guest = (d.get("guest") or {}).get("stat_end") or {}  # since boot, as QEMU counts
        host = d.get("host") or {}
        limit = d.get("throttle") or {}
        rows.append(
            (
                f"{(d.get('guest') or {}).get('name', '?')} {d['serial']}"
                + (" ro" if d.get("read_only") else ""),
                f"{d['capacity_bytes'] / 2**20:g} MiB",
                f"{limit['iops']} iops" if limit.get("iops") else "-",
                "/".join(str(guest.get(k, "-")) for k in ("read_ios", "write_ios", "flush_ios")),
                "/".join(
                    str(host.get(k, "-"))
                    for k in ("rd_operations", "wr_operations", "flush_operations")
                ),
                f"{d['workers']['iops']:.0f}" if d.get("workers") else "-",
                f"{(d.get('workers') or {}).get('errors', 0)}/"
                + (str(host_failed(host)) if host else "-"),
            )
        )
    return "\n".join(table(rows))


def payload_table(record: dict) -> str:
    """Per payload: how it ended and each metric with its unit and polarity."""
    payloads = record.get("payloads") or []
    if not payloads:
        return ""
    rows = [("payload", "cgroup", "end", "metric", "value", "better")]
    for p in payloads:
        if not p.get("ended"):
            end = "no end"
        elif p.get("stopped_by"):
            end = f"stopped ({p['stopped_by']})"
        else:
            end = f"signal {p['signal']}" if "signal" in p else f"exit {p.get('code')}"
        metrics = sorted((p.get("metrics") or {}).items()) or [("-", None)]
        for i, (name, m) in enumerate(metrics):
            value = f"{m['value']:.4g} {m.get('unit', '')}".strip() if m else "-"
            better = ("higher" if m.get("higher_is_better", True) else "lower") if m else "-"
            first = (p["name"], p["cgroup"], end) if i == 0 else ("", "", "")
            rows.append((*first, name, value, better))
    return "\n".join(table(rows))


def run_summary(record: dict, run_dir: str) -> str:
    cal = record.get("calibration", {})
    parts = [verdict_table(record)]
    for extra in (cgroup_table(record), disk_table(record), payload_table(record)):
        if extra:
            parts.append(extra)
    info = [
        f"kernel {record.get('kernel', {}).get('release', '?')}",
        f"accelerator {record.get('accel', {}).get('name', '?')}",
    ]
    if cal.get("dilation"):
        info.append(f"guest/host CPU dilation {cal['dilation']}x")
    parts.append("; ".join(info) + f"\nrun dir: {run_dir}")
    # Findings, cgroup paths and disk names carry guest text: never let it drive a terminal.
    return escape("\n\n".join(parts), multiline=True)
