"""Check thresholds as data, with documented defaults and ``--set`` overrides."""

from __future__ import annotations

import math

from ktstr.errors import ConfigError

# Not a threshold: set by checks/steps.py when it judges one step on its own, where a
# spread that shared CPUs cannot explain either way is too little data to fail on.
PROVEN_ONLY = "fairness.proven_only"

DEFAULTS: dict[str, float] = {
    # not_stuck: every worker progressed, and no gap between progress stamps was longer.
    "not_stuck.max_gap_ms": 2000.0,
    # fairness: spread (max - min, percentage points) of off-CPU share among equal workers.
    "fairness.max_spread_pct": 15.0,
    "fairness.min_workers": 2.0,
    # CPU shares measured over a shorter run are noisier (by about 1/sqrt(duration)): below
    # this duration the spread limit widens by sqrt(reference / duration).
    "fairness.reference_duration_s": 12.0,
    # A spread beyond the limit is judged again on shared CPUs (checks/colocated.py): each
    # worker's CPU rate against its co-runners' while they shared a CPU.  The highest
    # worker's ratio over the lowest may be this much: 1 is equal sharing; one of two
    # workers on a CPU getting twice the other's time is 4.  EEVDF under TCG reaches 1.8
    # on 16 vCPUs (bench/README.md).  Every worker must have shared a CPU this long.
    "fairness.max_shared_ratio": 2.5,
    "fairness.min_shared_s": 1.0,
    # fairness across sibling cgroups with different cpu.weight: allowed deviation of the
    # measured CPU-time ratio from the weight ratio, in percent.
    "fairness.weight_tolerance_pct": 25.0,
    # steps (checks/steps.py): a scenario step at least this long is also judged on its own
    # by the checks that average over time (fairness and weights), where every compared
    # worker must have shared a CPU this long: ratios over 1 s of sharing ranged 0.3-3.1
    # under EEVDF on 15 vCPUs.
    "steps.min_judged_s": 4.0,
    "steps.min_shared_s": 2.0,
    # isolation: how long after a cpuset change a worker may still be seen on an old CPU.
    "isolation.grace_ms": 250.0,
    # work_conservation: CPUs idle while tasks waited in other run queues they could use,
    # averaged over a window so a transient (a wakeup, a balancing pass) does not count.
    # EEVDF under TCG stays under 0.25 CPUs on oversubscribed 15/16-vCPU guests; a
    # scheduler that piles work on one CPU of four idles three.
    "work_conservation.window_s": 2.0,
    "work_conservation.max_idle_cpus": 1.0,
    # ... or this fraction of the CPUs the waiting work could use, if larger.
    "work_conservation.max_idle_fraction": 0.125,
    # Only a CPU idle this share of an interval counts as idle capacity (wakeup-heavy
    # work idles CPUs between wakeups, which a waiting task elsewhere need not overlap).
    "work_conservation.min_idle_share": 0.75,
    # Intervals this soon after a placement change (spawn, cpuset, affinity, move) are
    # left out: the kernel and the scheduler are still moving the tasks.
    "work_conservation.settle_s": 1.0,
    # imbalance: busiest / least busy CPU's mean runnable tasks over a window, where the
    # CPUs a group of workers may use are oversubscribed.  EEVDF under single-threaded
    # TCG reaches 3.7 with two spinners per CPU on 15 and 16 vCPUs (bench/README.md).
    "imbalance.window_s": 2.0,
    "imbalance.max_ratio": 5.0,
    "imbalance.min_load": 0.5,
    "imbalance.settle_s": 1.0,
    # emulator: the share of the time QEMU's threads waited for a host CPU, beyond which
    # the run's timings are not the scheduler's (a busy host): the verdict is inconclusive.
    # Off (0) until records place it: a VM alone on this 2-core host waited 0.3-0.7 %, two
    # VMs with other jobs beside them 18-26 %, when 16-vCPU runs under EEVDF failed falsely.
    "emulator.max_wait_share": 0.0,
    # ... and beyond this share, timing failures (not_stuck, fairness, work_conservation,
    # imbalance) say how long QEMU waited, so a user knows to rerun on a quieter host.
    "emulator.note_wait_share": 0.15,
    # monitor: conditions the host-side monitor saw in the guest kernel, each judged only
    # when it lasts this many samples in a row (0.5 s at the default 0.1 s period).
    # Report-only unless monitor.enforce is 1 (or the run's --monitor-enforce); 0 turns a
    # condition off.  See docs/monitor.md for what EEVDF and scx_simple reach.
    "monitor.sustain_samples": 5.0,
    "monitor.enforce": 0.0,
    "monitor.max_imbalance_ratio": 4.0,  # most / fewest runnable tasks on a CPU
    "monitor.max_local_dsq": 50.0,  # tasks on one CPU's local DSQ
    "monitor.check_clock": 1.0,  # a CPU with runnable tasks whose rq clock stands still
    "monitor.max_fallback_rate": 200.0,  # SCX_EV_SELECT_CPU_FALLBACK per second
    "monitor.max_keep_last_rate": 100.0,  # SCX_EV_DISPATCH_KEEP_LAST per second
    # disk_errors: I/O errors allowed per disk (QEMU's failed requests + guest-side refusals).
    "disk_errors.max_errors": 0.0,
    # optional checks; 0 disables them.
    # io_throughput: I/O workers on a throttled disk reach this fraction of its IOPS limit.
    "io_throughput.min_fraction_of_limit": 0.0,
    "max_migration_ratio.limit": 0.0,  # migrations per unit of work
    "max_p99_wake_latency_us.limit": 0.0,
    "min_work_rate.limit": 0.0,  # work units per second per worker
}


def _checked(key: str, raw: object) -> float:
    if key not in DEFAULTS:
        raise ConfigError(
            f"unknown threshold {key!r}", f"use one of: {', '.join(sorted(DEFAULTS))}"
        )
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"threshold {key}={raw!r} is not a number", "give a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"threshold {key}={raw} must be a finite number >= 0", "give 0 or more")
    return value


def validate(thresholds: dict[str, object]) -> dict[str, float]:
    """Thresholds by name, each known and a finite number >= 0 (a typo is an error)."""
    return {key: _checked(key, raw) for key, raw in thresholds.items()}


def parse_overrides(items: list[str] | None) -> dict[str, float]:
    """``["not_stuck.max_gap_ms=500"]`` -> {"not_stuck.max_gap_ms": 500.0}, validated."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"threshold {item!r} is not key=value", "write it as key=value")
        out[key] = _checked(key, raw)
    return out


def merged(overrides: dict[str, float] | None) -> dict[str, float]:
    return {**DEFAULTS, **(overrides or {})}
