"""Dask worker resources: what a host offers and what a variant asks for.

Dask admits a task on a worker only when the worker's free resources cover
the task's request, so a 32-vCPU variant and a 4-vCPU one land on different
hosts; each host's VM slots stay the real arbiter of what runs at once.
"""

from __future__ import annotations

import os

from ktstr.host import mem_available_mib
from ktstr.topology import Topology

# The share of available memory a worker offers to guest RAM, as the local pool's budget.
MEMORY_SHARE = 0.8


def host_resources() -> dict[str, float]:
    """This host's offer: CPUs, guest RAM in MiB, and whether KVM may work (0/1)."""
    from ktstr.vm.accel import host_kvm_problem

    return {
        "vcpus": float(os.cpu_count() or 1),
        "mem_mib": float(int((mem_available_mib() or 4096) * MEMORY_SHARE)),
        "kvm": 0.0 if host_kvm_problem() else 1.0,
    }


def variant_request(topology: Topology, accel: str, tcg_mode: str | None) -> dict[str, float]:
    """What one variant's VM takes from a worker: host threads (one per vCPU, or one under
    single-threaded TCG, as the local pool counts them), guest RAM, and KVM if asked for."""
    threads = 1 if accel == "tcg" and tcg_mode == "single" else topology.cpus
    request = {"vcpus": float(threads), "mem_mib": float(topology.memory)}
    if accel == "kvm":
        request["kvm"] = 1.0
    return request


def describe(request: dict[str, float]) -> str:
    """``4 vcpus, 576 MiB, kvm``: a request or an offer in a sentence."""
    parts = [f"{request.get('vcpus', 0):g} vcpus", f"{request.get('mem_mib', 0):g} MiB"]
    if request.get("kvm"):
        parts.append("kvm")
    return ", ".join(parts)


def fits(request: dict[str, float], offer: dict[str, float]) -> bool:
    return all(offer.get(name, 0.0) >= amount for name, amount in request.items())
