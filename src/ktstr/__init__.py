"""ktstr: test Linux process schedulers in QEMU VMs with declared CPU topologies."""

from ktstr.disk import Disk, Throttle
from ktstr.payloads.model import Metric, Payload
from ktstr.scenario.controls import MemPolicy
from ktstr.scenario.cpuset import CpusetSpec
from ktstr.scenario.model import (
    BATCH,
    EXT,
    IDLE,
    NORMAL,
    RR,
    CgroupDef,
    Checks,
    Deadline,
    Fifo,
    HoldSpec,
    Op,
    Policy,
    Requires,
    Scenario,
    Step,
    run_defs,
    run_steps,
)
from ktstr.scenario.work import WorkSpec
from ktstr.scheduler import EEVDF, Flag, Scheduler
from ktstr.topology import Topology

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ktstr_test lives in the pytest plugin; import it (and pytest) only when asked for.
    if name == "ktstr_test":
        from ktstr.pytest_plugin import ktstr_test

        return ktstr_test
    raise AttributeError(f"module 'ktstr' has no attribute {name!r}")


__all__ = [
    "BATCH",
    "EEVDF",
    "EXT",
    "IDLE",
    "NORMAL",
    "RR",
    "CgroupDef",
    "Checks",
    "CpusetSpec",
    "Deadline",
    "Disk",
    "Fifo",
    "Flag",
    "HoldSpec",
    "MemPolicy",
    "Metric",
    "Op",
    "Payload",
    "Policy",
    "Requires",
    "Scenario",
    "Scheduler",
    "Step",
    "Throttle",
    "Topology",
    "WorkSpec",
    "__version__",
    "run_defs",
    "run_steps",
]
