"""Facts about this host, and host limits set through the environment."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ktstr.errors import ConfigError

if TYPE_CHECKING:
    from ktstr.topology import Topology


def memory_problem(topology: Topology, available_mib: int | None) -> str | None:
    """Why the host cannot hold this guest's RAM, or None (unknown availability: None)."""
    if available_mib and topology.memory > available_mib:
        return (
            f"its {topology.cpus} vCPUs need {topology.memory} MiB of guest RAM and this host "
            f"has {available_mib} MiB available"
        )
    return None


def mem_available_mib() -> int:
    """MemAvailable from /proc/meminfo, in MiB (0 if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def positive_int_env(name: str, default: int) -> int:
    """An environment variable that must be a whole number >= 1, or ``default`` if unset."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a number", "set it to a positive integer or unset it"
        ) from None
    if value < 1:
        raise ConfigError(f"{name}={value} is below 1", "set it to a positive integer")
    return value
