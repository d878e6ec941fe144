"""Findings and verdicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ktstr.text import escape

PASS, FAIL, INCONCLUSIVE, SKIP = "pass", "fail", "inconclusive", "skip"


@dataclass(frozen=True)
class Finding:
    """One judgement: what, where, the value and the limit."""

    check: str
    status: str  # pass | fail | inconclusive | skip
    kind: str  # e.g. "stuck", "no_progress", "unfair", "escaped_cpuset", "oops"
    message: str
    worker: int | None = None
    cgroup: str | None = None
    cpu: int | None = None
    at_s: float | None = None
    value: float | None = None
    limit: float | None = None
    step: str | None = None  # the scenario step it happened in, when it has several

    def __post_init__(self) -> None:
        # Messages quote guest text (console lines, scheduler output): never let it
        # drive the reader's terminal.
        object.__setattr__(self, "message", escape(self.message))

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Verdict:
    status: str
    findings: tuple[Finding, ...]

    @staticmethod
    def of(findings: list[Finding]) -> Verdict:
        statuses = {f.status for f in findings}
        if FAIL in statuses:
            status = FAIL
        elif INCONCLUSIVE in statuses:
            status = INCONCLUSIVE
        elif statuses and statuses <= {SKIP}:
            status = SKIP
        else:
            status = PASS
        return Verdict(status, tuple(findings))
