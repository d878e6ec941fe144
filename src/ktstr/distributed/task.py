"""One variant as a unit of distributed work: its wire form, and the function a worker runs.

The client sends a wire-encoded spec (scenario name, topology, scheduler,
profile, duration, kernel, accelerator, disks, includes) plus the host
files it names (see ``shipping``); the worker fetches the kernel if it
lacks it, runs the variant with ``run_scenario`` in scratch space, returns
the record with its run directory's files, and removes the scratch.  Every
outcome is data, never an exception, so the client tells infrastructure
failures (retried) from everything else (reported).
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ktstr import __version__, paths, wire
from ktstr.disk import Disk, Throttle
from ktstr.distributed.outcome import ERROR, INFRASTRUCTURE, classify, oom_kills
from ktstr.distributed.shipping import Localized, Shipment, unpack
from ktstr.scheduler import Flag, Scheduler

# Outcomes a worker returns (and ERROR, INFRASTRUCTURE: see outcome).
__all__ = ["DONE", "ERROR", "INFRASTRUCTURE", "REFUSED", "Task", "execute"]
DONE = "done"  # a record: whatever its verdict, never run again
REFUSED = "refused"  # the worker runs another ktstr version
# A run directory's files travel back up to this size each (disk images stay behind).
MAX_FILE_BYTES = 64 * 2**20
EVENT_TOPIC = "ktstr-attempt"


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one variant."""

    scenario: str
    variant_id: str
    topology: str
    scheduler: dict
    profile: str | None
    duration_s: float | None
    kernel: str | None
    accel: str | None
    disks: list[dict] | None = None
    shipped: dict[str, str] = field(default_factory=dict)  # a client's path -> its digest
    include: list[str] = field(default_factory=list)
    origin: str | None = None  # a scenario file's resolved path on the client
    version: str = __version__

    def to_wire(self) -> str:
        return wire.dumps(asdict(self))

    @classmethod
    def from_wire(cls, text: str) -> Task:
        data = wire.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a task is a JSON object")
        return cls(**data)


def scheduler_spec(scheduler: Scheduler) -> dict:
    """A Scheduler as plain data (its topology by name)."""
    data = asdict(scheduler)
    data["topology"] = scheduler.topology.name  # type: ignore[union-attr]
    data["args"], data["kernel_args"] = list(scheduler.args), list(scheduler.kernel_args)
    data["watchdog_args"] = list(scheduler.watchdog_args)
    data["flags"] = {name: {k: list(v) for k, v in f.items()} for name, f in data["flags"].items()}
    return data


def scheduler_from(spec: dict) -> Scheduler:
    """The Scheduler of :func:`scheduler_spec`."""
    data = dict(spec)
    data["flags"] = {
        name: Flag(**{k: tuple(v) for k, v in f.items()}) for name, f in spec["flags"].items()
    }
    data["args"], data["kernel_args"] = tuple(spec["args"]), tuple(spec["kernel_args"])
    data["watchdog_args"] = tuple(spec["watchdog_args"])
    return Scheduler(**data)


def disk_specs(disks: tuple[Disk, ...] | None) -> list[dict] | None:
    if disks is None:
        return None
    return [{**asdict(d), "throttle": d.throttle.as_dict()} for d in disks]


def disks_from(specs: list[dict] | None) -> tuple[Disk, ...] | None:
    if specs is None:
        return None
    return tuple(Disk(**{**s, "throttle": Throttle(**s["throttle"])}) for s in specs)


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The run directory's files (record.json aside) by relative path, each bounded."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        if (
            path.is_file()
            and not path.is_symlink()
            and path.name != "record.json"
            and path.stat().st_size <= MAX_FILE_BYTES
        ):
            out[str(path.relative_to(run_dir))] = path.read_bytes()
    return out


def _where() -> tuple[str, str | None, str | None]:
    """This host's name, this Dask worker's address and its scratch directory (the
    worker removes it when it stops); Nones outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return platform.node(), None, None
    return platform.node(), worker.address, worker.local_directory


def _announce(key: str, host: str, address: str | None) -> None:
    """Tell the scheduler this attempt started, so the client learns of attempts a lost
    worker took with it (Dask re-queues those on its own)."""
    try:
        from distributed import get_worker

        get_worker().log_event(EVENT_TOPIC, {"key": key, "host": host, "worker": address})
    except (ImportError, ValueError):
        pass


def execute(payload: str, key: str, shipped: dict[str, Shipment] | None = None) -> dict:
    """Run one variant on this worker; the outcome as plain data (see the module doc)."""
    from ktstr import runner
    from ktstr.distributed.kernel import ensure
    from ktstr.topology import Topology

    host, address, local = _where()
    base = {"host": host, "worker": address, "ktstr": __version__}
    data = wire.loads(payload)
    theirs = data.get("version") if isinstance(data, dict) else None
    if theirs != __version__:  # before the fields: another version may have others
        return {
            **base,
            "outcome": REFUSED,
            "error": f"worker {address} on {host} runs ktstr {__version__} and the client {theirs}",
        }
    task = Task.from_wire(payload)
    _announce(key, host, address)
    scratch = Path(tempfile.mkdtemp(prefix="ktstr-variant-", dir=local))
    oom_before = oom_kills()
    try:
        shipments = shipped or {}
        here = Localized({n: unpack(d, shipments[d]) for n, d in task.shipped.items()}, scratch)
        ensure(task.kernel)
        with paths.runs_under(scratch):
            record, run_dir = runner.run_scenario(
                here.scenario(task.scenario, task.origin),
                Topology.parse(task.topology),
                task.kernel,
                task.accel,
                task.duration_s,
                scheduler=here.scheduler(scheduler_from(task.scheduler)),
                profile=task.profile,
                disks=here.disks(disks_from(task.disks)),
                include=tuple(map(here.path, task.include)),
            )
            files = run_files(run_dir)
    except Exception as err:  # noqa: BLE001 - every failure goes back as data, in one sentence
        outcome, error = classify(err, oom_before, oom_kills())
        return {**base, "outcome": outcome, "error": error}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**base, "outcome": DONE, "record": dict(record), "files": files}
