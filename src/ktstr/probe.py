"""``ktstr vm probe``: boot a topology and compare what the guest sees with what was asked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ktstr import paths, wire
from ktstr.disk import Disk
from ktstr.errors import KernelError, VmError
from ktstr.kernel.store import resolve
from ktstr.text import escape
from ktstr.topology import Topology
from ktstr.vm import accel as accel_mod
from ktstr.vm.boot import boot, timings

LAYOUT_KEYS = ("cpus", "numa_nodes", "llcs", "smt_siblings")


@dataclass
class ProbeResult:
    requested: dict[str, Any]
    observed: dict[str, Any]
    numa_distances: dict[str, Any]
    accel: accel_mod.Accel
    kernel_release: str
    guest_release: str
    sched_ext: dict[str, Any]
    timings_s: dict[str, float]
    run_dir: str
    disks: list[dict[str, Any]] = field(default_factory=list)  # requested vs seen, per disk

    @property
    def match(self) -> bool:
        return (
            self.requested == self.observed
            and self.numa_distances["requested"] == self.numa_distances["observed"]
            and all(d["match"] for d in self.disks)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "observed": self.observed,
            "match": self.match,
            "accel": self.accel.name,
            "accel_reason": self.accel.reason,
            "kernel": self.kernel_release,
            "sched_ext": self.sched_ext,
            "numa_distances": self.numa_distances,
            "timings_s": self.timings_s,
            "run_dir": self.run_dir,
            "disks": self.disks,
        }


def expected_distances(topology: Topology) -> list[list[int]]:
    n = topology.numa_nodes
    return [[10 if i == j else 20 for j in range(n)] for i in range(n)]


def run_probe(
    topology: Topology,
    kernel: str | None = None,
    accel: str | None = None,
    timeout_s: float | None = None,
    require_sched_ext: bool = False,
    disks: Sequence[Disk] = (),
) -> ProbeResult:
    info = resolve(kernel)
    if require_sched_ext and info.sched_ext is False:
        raise KernelError(
            f"kernel {info.release} lacks CONFIG_SCHED_CLASS_EXT",
            "use a sched_ext kernel ('ktstr kernel fetch')",
        )
    chosen = accel_mod.choose(accel, info.boot_path)
    run_dir = paths.new_run_dir(f"probe-{topology.name}")
    done = boot(topology, info, chosen, run_dir, {"mode": "probe"}, timeout_s, disks=disks)
    topo_msg = done.result.first(wire.TOPOLOGY)
    hello = done.result.first(wire.HELLO)
    if topo_msg is None or hello is None:
        raise VmError("the guest agent reported no topology", f"see {run_dir / 'channel.jsonl'}")
    observed = {k: topo_msg[k] for k in LAYOUT_KEYS}
    scx = {
        k: v
        for k, v in (done.result.first(wire.SCHED_EXT) or {}).items()
        if k not in ("v", "kind", "t", "host_s")
    }
    return ProbeResult(
        requested=topology.layout(),
        observed=observed,
        numa_distances={
            "requested": expected_distances(topology),
            "observed": topo_msg.get("numa_distances", []),
        },
        accel=chosen,
        kernel_release=info.release,
        guest_release=hello.get("release", "?"),
        sched_ext=scx,
        timings_s=timings(done.result),
        run_dir=str(run_dir),
        disks=_disk_rows(done),
    )


def _disk_rows(done) -> list[dict[str, Any]]:
    seen = {d["serial"]: d for d in (done.result.first(wire.DISKS) or {}).get("disks", [])}
    rows = []
    for p in done.disks:
        want = {"serial": p.serial, "sectors": p.size // 512, "read_only": p.disk.read_only}
        got = seen.get(p.serial)
        have = {k: got[k] for k in want} if got else None
        rows.append(
            {
                "requested": want,
                "observed": have,
                "name": got and got["name"],
                "match": want == have,
            }
        )
    return rows


def _disk_text(d: dict[str, Any] | None) -> str:
    if not d:
        return "absent"
    return f"{d['serial']} {d['sectors']} sectors" + (" ro" if d["read_only"] else "")


def _groups(groups: list[list[int]]) -> str:
    def span(g: list[int]) -> str:
        if len(g) > 1 and g == list(range(g[0], g[-1] + 1)):
            return f"{g[0]}-{g[-1]}"
        return ",".join(map(str, g))

    text = " ".join(f"[{span(g)}]" for g in groups)
    return text if len(text) <= 60 else text[:57] + "..."


def render(result: ProbeResult) -> str:
    """The side-by-side table of requested vs observed."""
    rows = [("what", "requested", "observed", "")]
    for key in LAYOUT_KEYS:
        req, obs = result.requested[key], result.observed[key]
        fmt = str if key == "cpus" else _groups
        rows.append((key, fmt(req), fmt(obs), "ok" if req == obs else "MISMATCH"))
    dist = result.numa_distances
    rows.append(
        (
            "numa_distances",
            str(dist["requested"]),
            str(dist["observed"]),
            "ok" if dist["requested"] == dist["observed"] else "MISMATCH",
        )
    )
    for d in result.disks:
        rows.append(
            (
                f"disk {d['name'] or '?'}",
                _disk_text(d["requested"]),
                _disk_text(d["observed"]),
                "ok" if d["match"] else "MISMATCH",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    scx = result.sched_ext
    scx_text = f"present, state {scx.get('state')}" if scx.get("present") else "ABSENT"
    t = result.timings_s
    lines += [
        "",
        f"kernel: {result.kernel_release} (guest reports {result.guest_release}); "
        f"sched_ext {scx_text}",
        f"{result.accel.line()}",
        "timings: qemu start -> agent ready {:.2f} s, agent -> done {:.2f} s, "
        "total {:.2f} s".format(
            t.get("qemu_start_to_agent_ready", float("nan")),
            t.get("agent_ready_to_done", float("nan")),
            t.get("total", float("nan")),
        ),
        f"run dir: {result.run_dir}",
        "result: " + ("MATCH" if result.match else "MISMATCH"),
    ]
    return escape("\n".join(lines), multiline=True)  # guest release, disk names
