"""``ktstr worker``: a Dask worker that offers this host's CPUs, memory and KVM to variants.

It runs variants with this host's kernels, QEMU and built schedulers (each
fetched or built through the host's own caches) and its own VM slots, so a
host is never oversubscribed whatever the scheduler sends it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile

from ktstr.distributed import require
from ktstr.distributed.resources import describe, host_resources
from ktstr.distributed.security import Tls
from ktstr.errors import EnvironmentProblem

# How long a worker tries to reach its scheduler before it gives up.
DEATH_TIMEOUT_S = 60.0


def serve(
    address: str, nthreads: int | None = None, name: str | None = None, tls: Tls | None = None
) -> int:
    """Serve variants from the scheduler at ``address`` until it goes away or Ctrl-C;
    ``tls``: encrypted, with this worker's certificate."""
    distributed = require()
    resources = host_resources()
    threads = nthreads or os.cpu_count() or 1
    logging.getLogger("ktstr").info(
        "worker for %s: %d VMs at once at most, offering %s",
        address,
        threads,
        describe(resources),
    )
    scratch = tempfile.mkdtemp(prefix="ktstr-worker-")
    # Dask's own clean-up of its scratch, at exit, finds the directory removed already.
    logging.getLogger("distributed.diskutils").setLevel(logging.CRITICAL)

    async def run() -> None:
        from ktstr.vm import lifecycle

        main = asyncio.current_task()

        def stop() -> None:  # Ctrl-C or SIGTERM: kill the running VMs, leave the cluster
            lifecycle.ABORT.set()
            if main:
                main.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        async with distributed.Worker(
            address,
            nthreads=threads,
            resources=resources,
            name=name,
            local_directory=scratch,
            death_timeout=DEATH_TIMEOUT_S,
            dashboard=False,
            security=tls.security("worker") if tls else None,
        ) as worker:
            await worker.finished()

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        pass  # stopped by a signal
    except (OSError, TimeoutError) as err:
        raise EnvironmentProblem(
            f"cannot reach the Dask scheduler at {address} ({err or type(err).__name__})",
            "start one with 'dask scheduler' and check the address and port",
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0
