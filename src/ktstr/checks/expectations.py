"""Expectations a test declares about its own failure, applied to the findings last.

``expect_error``: the run passes only if a scheduler failure matches the regex (the
VM's own end is then no failure: an ejected scheduler may take the VM down).
``expect_fail``: the run passes only if something failed.

Reads: ``plan.expect`` (``error``, ``fail``).
"""

from __future__ import annotations

import re

from ktstr.checks.model import FAIL, PASS, Finding
from ktstr.errors import ConfigError


def apply_expectations(findings: list[Finding], expect: dict) -> list[Finding]:
    pattern, expect_fail = expect.get("error"), expect.get("fail")
    if not pattern and not expect_fail:
        return findings
    failed = [f for f in findings if f.status == FAIL]
    if pattern:
        matched = [f for f in failed if f.check == "scheduler" and re.search(pattern, f.message)]
        if matched:
            kept = [f for f in findings if f not in matched and f.check != "vm"]
            seen = Finding(
                "expect", PASS, "expected_error", f"expected error seen: {matched[0].message}"
            )
            return kept + [seen]
        missing = Finding(
            "expect",
            FAIL,
            "expected_error_missing",
            f"no scheduler failure matched expect_error {pattern!r}",
        )
        return findings + [missing]
    if failed:
        seen = Finding(
            "expect", PASS, "expected_failure", f"failed as expected: {failed[0].message}"
        )
        return [seen] + [f for f in findings if f.status != FAIL]
    return findings + [
        Finding(
            "expect", FAIL, "expected_failure_missing", "expect_fail was set but the run passed"
        )
    ]


def validate_expect_error(pattern: str) -> str:
    """Refuse a regex that matches everything (it would pin nothing)."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ConfigError(
            f"expect_error {pattern!r} is not a valid regex: {err}", "fix the pattern"
        ) from None
    if compiled.search("") is not None:
        raise ConfigError(
            f"expect_error {pattern!r} matches any text",
            "give a pattern that names the expected error message",
        )
    return pattern
