"""The Dask executor: a gauntlet's variants on a Dask cluster, landed here as each ends.

``local`` or ``local:N`` starts a LocalCluster of N workers on this host
(for trying it out, and for the tests); anything else is the address of a
running Dask scheduler whose workers are ``ktstr worker`` processes.

Retries are for infrastructure only: QEMU that did not start, a host out
of memory, a lost worker (Dask itself re-queues a lost worker's task; the
scheduler's ``allowed-failures`` bounds that).  A variant runs at most
``1 + retries`` times and its record lists every attempt; a verdict,
whatever it is, is never run again.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ktstr import __version__
from ktstr.disk import Disk
from ktstr.distributed import require
from ktstr.distributed.landing import checked, land
from ktstr.distributed.resources import describe, fits, host_resources, variant_request
from ktstr.distributed.security import Tls
from ktstr.distributed.shipping import bundle, needed, origin
from ktstr.distributed.task import (
    DONE,
    ERROR,
    EVENT_TOPIC,
    INFRASTRUCTURE,
    REFUSED,
    Task,
    disk_specs,
    execute,
    scheduler_spec,
)
from ktstr.errors import ConfigError, EnvironmentProblem, KtstrError, VmError
from ktstr.presets import Variant
from ktstr.scheduler import Scheduler
from ktstr.topology import Topology

RETRIES = 2
WORKER_HINT = "start one with 'ktstr worker ADDRESS' on each host"


@dataclass(frozen=True)
class DaskExecutor:
    """Where the variants run: ``local``, ``local:N`` or a scheduler's address."""

    address: str
    processes: bool = True  # local clusters: one process per worker (False: threads, for tests)
    connect_timeout_s: float = 15.0
    worker_wait_s: float = 60.0
    retries: int = RETRIES
    tls: Tls | None = None  # a tls:// scheduler's CA, and this client's certificate

    def local_workers(self) -> int | None:
        """N for ``local:N`` (2 for ``local``), None for a scheduler address."""
        name, sep, count = self.address.partition(":")
        if name != "local":
            return None
        if not sep:
            return 2
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(
                f"--dask {self.address!r} is not local:N with N a whole number >= 1",
                "use e.g. --dask local:2, or a scheduler address such as tcp://host:8786",
            )
        return int(count)


@contextmanager
def connect(executor: DaskExecutor) -> Iterator[Any]:
    """A Dask client on the executor's cluster; a local cluster stops with the block."""
    distributed = require()
    import dask

    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # -v shows Dask's own log
        logging.getLogger("distributed").setLevel(logging.WARNING)
    workers = executor.local_workers()
    if workers is None:
        try:
            client = distributed.Client(
                executor.address,
                timeout=executor.connect_timeout_s,
                set_as_default=False,
                security=executor.tls.security("client") if executor.tls else None,
            )
        except (OSError, TimeoutError, ValueError) as err:
            raise EnvironmentProblem(
                f"cannot reach the Dask scheduler at {executor.address} "
                f"({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                "start one with 'dask scheduler' and check the address and port",
            ) from None
        with client:
            yield client
        return
    # Dask's scratch space (and its lock files) lives in a directory removed afterwards.
    scratch = tempfile.mkdtemp(prefix="ktstr-dask-")
    config = {
        "distributed.scheduler.allowed-failures": executor.retries,
        "temporary-directory": scratch,
        "distributed.worker.preload": ["ktstr.distributed.local_worker"],
    }
    try:
        with dask.config.set(config):
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=executor.processes,
                resources=host_resources(),
                dashboard_address=None,
                silence_logs=logging.ERROR,
                local_directory=scratch,
            )
            try:
                with distributed.Client(cluster, set_as_default=False) as client:
                    yield client
            finally:
                cluster.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _version() -> str:
    from ktstr import __version__ as version

    return version


def check_versions(client: Any) -> None:
    """Refuse a cluster with a worker that runs another ktstr version."""
    for address, version in sorted(client.run(_version).items()):
        if version != __version__:
            raise ConfigError(
                f"worker {address} runs ktstr {version} and this client ktstr {__version__}",
                "install the same ktstr version on every host",
            )


def offers(client: Any) -> dict[str, dict[str, float]]:
    """Each worker's resources, by address."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: every worker is listed anyway
        info = client.scheduler_info()
    return {addr: dict(w.get("resources") or {}) for addr, w in info["workers"].items()}


def check_admission(
    cells: list[tuple[str, Variant]], requests: list[dict[str, float]], found: dict[str, dict]
) -> None:
    """Refuse, before anything runs, a variant no worker has the resources for."""
    for (scenario, variant), request in zip(cells, requests, strict=True):
        if not any(fits(request, offer) for offer in found.values()):
            largest = max(found.values(), key=lambda o: (o.get("vcpus", 0), o.get("mem_mib", 0)))
            raise ConfigError(
                f"no Dask worker can run {scenario}[{variant.id}]: it needs "
                f"{describe(request)}, and the largest worker offers {describe(largest)}",
                "start a worker on a bigger host, or leave that preset out",
            )


def accel_hint(accel: str | None) -> str:
    """The accelerator the requests are counted for: asked for, else as this host decides
    without booting (TCG unless KVM is known to work)."""
    from ktstr.vm.accel import choose

    if accel in ("kvm", "tcg"):
        return accel
    try:
        return choose(accel, None).name
    except KtstrError:
        return "kvm"


def _started(client: Any, key: str) -> list[dict]:
    """Every start of this attempt, as the workers announced it (a lost worker's too)."""
    return [msg for _, msg in client.get_events(EVENT_TOPIC) if msg.get("key") == key]


def run(
    cells: list[tuple[str, Variant]],
    scheduler: Scheduler,
    duration_s: float | None,
    kernel: str | None,
    accel: str | None,
    on_done: Callable[[Any, int, int], None],
    executor: DaskExecutor,
    on_start: Callable[[str, Variant], None] | None = None,
    disks: tuple[Disk, ...] | None = None,
    include: tuple[str, ...] = (),
) -> list[Any]:
    """Run every cell on the cluster; land each record as it ends; results in cell order.

    The host files the variants name travel with them (see ``shipping``).
    """
    from ktstr.gauntlet import Cell
    from ktstr.results.terminal import bug_summary
    from ktstr.userfile import scenario as load
    from ktstr.vm.qemu import tcg_thread_mode

    distributed = require()
    loaded = {ref: load(ref) for ref, _ in cells}
    index, shipments = bundle(needed([*loaded, *loaded.values()], scheduler, include, disks))
    hint = accel_hint(accel)
    tcg_mode = tcg_thread_mode() if hint == "tcg" else None
    requests = [variant_request(Topology.parse(v.topology), hint, tcg_mode) for _, v in cells]
    spec = scheduler_spec(scheduler)
    payloads = [
        Task(
            scenario,
            v.id,
            v.topology,
            spec,
            v.profile,
            duration_s,
            kernel,
            accel,
            disk_specs(disks),
            index,
            list(include),
            origin(scenario),
        ).to_wire()
        for scenario, v in cells
    ]
    results: dict[int, Any] = {}
    with connect(executor) as client:
        try:
            client.wait_for_workers(1, timeout=executor.worker_wait_s)
        except (TimeoutError, OSError):
            raise EnvironmentProblem(
                f"no Dask worker joined the scheduler at {executor.address} within "
                f"{executor.worker_wait_s:.0f} s",
                WORKER_HINT,
            ) from None
        check_versions(client)
        check_admission(cells, requests, offers(client))
        shipped = client.scatter([shipments], hash=False)[0] if shipments else None
        run_id = uuid.uuid4().hex[:8]
        attempts: dict[int, list[dict]] = {i: [] for i in range(len(cells))}
        owner: dict[str, int] = {}
        pending = distributed.as_completed(loop=client.loop)

        def submit(index: int) -> None:
            key = f"ktstr-{run_id}-{index}-{len(attempts[index])}"
            future = client.submit(
                execute,
                payloads[index],
                key,
                shipped,
                key=key,
                pure=False,
                resources=requests[index],
            )
            owner[future.key] = index
            pending.add(future)

        for index, (scenario, variant) in enumerate(cells):
            submit(index)
            if on_start:
                on_start(scenario, variant)
        try:
            for future in pending:
                index = owner.pop(future.key)
                scenario, variant = cells[index]
                try:
                    outcome = checked(future.result())
                except distributed.KilledWorker:
                    outcome = {
                        "outcome": INFRASTRUCTURE,
                        "error": "every worker it ran on was lost",
                    }
                except Exception as err:  # noqa: BLE001 - whatever a worker sent: one sentence
                    text = str(err).splitlines()[0][:300] if str(err) else ""
                    outcome = {"outcome": ERROR, "error": f"{type(err).__name__} {text}".strip()}
                starts = _started(client, future.key)
                finished_on = outcome.get("worker")
                for start in starts[:-1] if finished_on else starts:
                    attempts[index].append({**start, "outcome": "worker lost"})
                if finished_on is not None or not starts:  # a worker answered, or none started
                    attempts[index].append(
                        {
                            "key": future.key,
                            "host": outcome.get("host"),
                            "worker": finished_on,
                            "outcome": outcome["outcome"],
                            **({"error": outcome["error"]} if "error" in outcome else {}),
                        }
                    )
                label = f"{scenario}[{variant.id}]"
                if outcome["outcome"] == INFRASTRUCTURE:
                    if len(attempts[index]) <= executor.retries:
                        submit(index)
                        continue
                    hosts = ", ".join(str(a.get("host")) for a in attempts[index])
                    raise VmError(
                        f"{label} failed on {len(attempts[index])} attempts (on {hosts}), the "
                        f"last with: {outcome['error']}",
                        "check the workers' hosts (ktstr doctor)",
                    )
                if outcome["outcome"] == REFUSED:
                    raise ConfigError(
                        outcome["error"], "install the same ktstr version on every host"
                    )
                if outcome["outcome"] != DONE:
                    raise KtstrError(f"{label} on {outcome.get('host')}: {outcome['error']}")
                record, run_dir = land(
                    outcome,
                    loaded[scenario].name,
                    Topology.parse(variant.topology).name,
                    attempts[index],
                )
                results[index] = Cell(
                    scenario, variant, record["verdict"], str(run_dir), bug_summary(record)
                )
                on_done(results[index], len(results), len(cells))
        finally:
            client.cancel(list(pending.futures))  # interrupted or refused: stop what is queued
    return [results[i] for i in sorted(results)]
