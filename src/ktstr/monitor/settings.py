"""Whether a run gets the host-side monitor, at which period, and with what debug info.

The monitor costs each VM about 1-2 s of host CPU to attach and ~370 MiB
of host memory (drgn's index of the kernel's DWARF), so the default is:
on at 0.1 s when the kernel's debug info is already at hand (its own
DWARF, or a cached ``-dbg`` entry), off otherwise, with the reason kept
in the record.  Asked for explicitly (``--monitor-period``, a test's
``monitor_period_s``, ``KTSTR_MONITOR``), the monitor fetches missing
debug info first, saying so.  ``0`` turns it off.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ktstr.errors import ConfigError, KtstrError
from ktstr.kernel import debuginfo

if TYPE_CHECKING:
    from ktstr.kernel.image import KernelInfo

log = logging.getLogger(__name__)

ENV = "KTSTR_MONITOR"
DEFAULT_PERIOD_S = 0.1
MIN_PERIOD_S, MAX_PERIOD_S = 0.01, 60.0
HOST_MIB = 400  # host memory one VM's monitor takes (drgn's DWARF index peaks at ~370 MiB)


@dataclass(frozen=True)
class MonitorSettings:
    """What a run asks of the monitor.

    ``period_s``: None for the default, 0 for off, else seconds between
    samples.  ``enforce``: the monitor checks fail the run (else they only
    report).
    """

    period_s: float | None = None
    enforce: bool = False

    @property
    def explicit(self) -> bool:
        return self.period_s is not None and self.period_s > 0


@dataclass(frozen=True)
class Plan:
    """The decision for one run: sample at ``period_s`` with ``debug``, or ``off`` (why)."""

    period_s: float | None
    debug: Path | None
    enforce: bool
    off: str | None = None


def check_period(value: float, what: str = "--monitor-period") -> float:
    """A period in seconds, 0 (off) or within 0.01-60; anything else is one sentence."""
    if not math.isfinite(value) or value < 0 or 0 < value < MIN_PERIOD_S or value > MAX_PERIOD_S:
        raise ConfigError(
            f"{what} {value!r} is not 0 (off) or a period of {MIN_PERIOD_S}-{MAX_PERIOD_S:g} s",
            f"give e.g. {what} 0.1",
        )
    return value


def parse_period(text: str) -> float:
    """An argparse ``type`` for ``--monitor-period``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    return check_period(value)


def from_env() -> MonitorSettings:
    """``KTSTR_MONITOR``: unset for the default, ``0``/``off`` off, ``1``/``on`` 0.1 s, or a
    period in seconds; a bad value is refused in one sentence."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw == "":
        return MonitorSettings()
    if raw in ("0", "off", "no"):
        return MonitorSettings(0.0)
    if raw in ("1", "on", "yes"):
        return MonitorSettings(DEFAULT_PERIOD_S)
    try:
        return MonitorSettings(check_period(float(raw), ENV))
    except ValueError:
        raise ConfigError(
            f"{ENV}={raw!r} is not 0, 1 or a period in seconds", f"set e.g. {ENV}=0.1"
        ) from None


def resolve(settings: MonitorSettings | None, kernel: KernelInfo) -> Plan:
    """Decide, before the VM boots, whether and how the run is monitored.

    Settings left at their default take ``KTSTR_MONITOR``.  Never raises
    for missing debug info: the run goes on without the monitor and the
    plan says why.
    """
    settings = settings or MonitorSettings()
    if settings.period_s is None:
        settings = MonitorSettings(from_env().period_s, settings.enforce)
    if settings.period_s == 0:
        return Plan(None, None, settings.enforce, "off (monitor period 0)")
    image = Path(kernel.boot_path)
    try:
        debug = debuginfo.find(kernel.release, image)
    except KtstrError as err:
        if not settings.explicit:
            return Plan(None, None, settings.enforce, f"off by default without debug info: {err}")
        try:
            debug = fetch_for(kernel)
        except KtstrError as fetch_err:
            return Plan(None, None, settings.enforce, str(fetch_err))
    return Plan(settings.period_s or DEFAULT_PERIOD_S, debug.path, settings.enforce)


def fetch_for(kernel: KernelInfo) -> debuginfo.DebugInfo:
    """Fetch the debug info of a kernel ``ktstr kernel fetch`` cached, from where it came."""
    from ktstr.kernel.store import cached_dirs, meta

    entry = next((e for e in cached_dirs() if e.name == kernel.release), None)
    if entry is None:
        raise ConfigError(
            f"kernel {kernel.release} has no debug info and was not fetched by ktstr, so the "
            "monitor cannot fetch it",
            "boot a vmlinux built with CONFIG_DEBUG_INFO, or run without --monitor-period",
        )
    info = meta(entry)
    log.warning(
        "monitor: fetching the debug info of %s first (%s, about 350 MB, once)",
        kernel.release,
        debuginfo.package_name(kernel.release),
    )
    debuginfo.fetch(
        kernel.release,
        Path(kernel.boot_path),
        str(info.get("suite") or "unstable"),
        str(info["mirror"]) if info.get("mirror") else None,
    )
    return debuginfo.find(kernel.release, Path(kernel.boot_path))
