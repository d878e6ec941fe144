"""Host-side judgement of a RunRecord: pure functions, thresholds as data.

The guest records raw facts; these functions turn them into findings and
a verdict, so a stored record can be re-judged with other thresholds
without booting anything (``ktstr check``).  One module per check; the
list of checks and the verdict path are in ``judge.py``.
"""

from ktstr.checks.judge import CHECKS, judge
from ktstr.checks.model import Finding, Verdict
from ktstr.checks.thresholds import DEFAULTS, parse_overrides

__all__ = ["CHECKS", "DEFAULTS", "Finding", "Verdict", "judge", "parse_overrides"]
