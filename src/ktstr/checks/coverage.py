"""coverage: the sched_ext scheduler under test really scheduled the workload.

A scheduler that switches only SCHED_EXT tasks (switch-partial) leaves every normal
worker to the kernel's fair class: the run would judge EEVDF and pass while testing
nothing.  Each worker reports whether it was in the sched_ext class when it started
(``ext.enabled`` of /proc/<pid>/sched).  None, or only some, of the workers the
scheduler should have taken make the verdict inconclusive, with the workers named and
the fix (``policy=EXT`` for a switch-partial scheduler).  Real-time and deadline
workers are not expected: their classes rank above sched_ext.

Reads: ``scheduler.binary``, ``workers[].ext_at_start, policy, id, cgroup_path``.
"""

from __future__ import annotations

from ktstr.checks.model import INCONCLUSIVE, PASS, SKIP, Finding

_ABOVE_EXT = ("fifo", "rr", "deadline")


def coverage(record: dict, th: dict) -> list[Finding]:
    sched = record.get("scheduler") or {}
    if not sched.get("binary"):
        return [Finding("coverage", SKIP, "not_applicable", "no sched_ext scheduler under test")]
    name = sched.get("name", "the scheduler")
    expected = [w for w in record.get("workers", []) if w.get("policy") not in _ABOVE_EXT]
    known = [w for w in expected if isinstance(w.get("ext_at_start"), bool)]
    if not known:
        return [
            Finding(
                "coverage",
                SKIP,
                "not_recorded",
                "no worker recorded its scheduling class (the kernel does not report "
                "ext.enabled, or the record predates it)",
            )
        ]
    missed = [w for w in known if not w["ext_at_start"]]
    if not missed:
        return [
            Finding(
                "coverage",
                PASS,
                "ok",
                f"{name} scheduled all {len(known)} workers (sched_ext class)",
                value=float(len(known)),
            )
        ]
    ids = ", ".join(str(w["id"]) for w in missed[:10]) + ("..." if len(missed) > 10 else "")
    if len(missed) == len(known):
        what = f"{name} scheduled none of the {len(known)} workers"
    else:
        what = f"{name} scheduled {len(known) - len(missed)} of {len(known)} workers"
    return [
        Finding(
            "coverage",
            INCONCLUSIVE,
            "not_scheduled",
            f"{what}: workers {ids} ran in the kernel's fair class, so the run did not test "
            f"{name} on them (a scheduler that takes only SCHED_EXT tasks needs the workers' "
            "policy=EXT)",
            value=float(len(known) - len(missed)),
            limit=float(len(known)),
        )
    ]
