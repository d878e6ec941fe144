"""A stand-in for the VM run, for Dask workers in their own processes.

Dask pickles the plugin by reference, so it lives in an importable module.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def fake_run(verdict: str = "pass"):
    """A ``run_scenario`` that writes a run directory and a record, and boots nothing."""

    def run_scenario(scenario, topology, *args, **kwargs):
        from ktstr import paths, runner
        from ktstr.record import builder

        run_dir = paths.new_run_dir(f"{scenario.name}-{topology.name}")
        (run_dir / "console.log").write_text(f"console of {topology.name}\n")
        (run_dir / "sub").mkdir()
        (run_dir / "sub" / "channel.jsonl").write_text("{}\n")
        record = builder.skipped(scenario, topology, "faked")
        record.update(verdict=verdict, findings=[], host=platform.node())
        runner.save(record, run_dir)
        return record, run_dir

    return run_scenario


try:
    from distributed import WorkerPlugin
except ImportError:  # the tests that use it skip without Dask
    WorkerPlugin = object  # type: ignore[assignment,misc]


class DieOnceThenPass(WorkerPlugin):
    """Dask worker plugin: the first variant to start kills its worker's process (after
    the worker announced the attempt); every later one passes."""

    name = "ktstr-die-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        from ktstr import runner
        from ktstr.distributed import kernel

        kernel.ensure = lambda spec: None  # no VM runs here: the kernel is taken as cached

        passing = fake_run()
        marker = Path(self.marker)

        def run_scenario(*args, **kwargs):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return passing(*args, **kwargs)
            os.close(fd)
            time.sleep(1.0)  # let the worker's attempt event reach the scheduler
            os._exit(1)

        runner.run_scenario = run_scenario
