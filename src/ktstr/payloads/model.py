"""``Payload`` and ``Metric``: a program, how to read its output, and how to judge it.

A declaration is data: the parser and every metric serialize into the plan
(``to_wire``), so a stored run can be parsed and judged again without the
Python object that declared it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ktstr.errors import ConfigError

FORMATS = ("exit", "json", "regex", "stress-ng")
STREAMS = ("stdout", "stderr", "both")
AGGREGATES = ("first", "last", "sum", "mean", "min", "max")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class Metric:
    """One number a payload prints: where it is, its unit, which way is better, its bounds.

    ``source`` is a path into the parsed document for ``json`` and ``stress-ng``
    (``jobs/*/read/iops``, keys split by ``/``; ``*`` takes every item), or a regex with one group
    for ``regex`` (matched against each line).  Several matches are combined
    by ``aggregate``.  ``min``/``max`` are bounds the payload check enforces.
    """

    name: str
    source: str
    unit: str = ""
    higher_is_better: bool = True
    aggregate: str = "last"
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"metric name {self.name!r} is not a plain name",
                "use letters, digits, '_', '.', '+' and '-' (at most 64)",
            )
        if self.aggregate not in AGGREGATES:
            raise ConfigError(
                f"metric {self.name}: aggregate {self.aggregate!r} is unknown",
                f"use one of {', '.join(AGGREGATES)}",
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(
                f"metric {self.name}: min {self.min} is above max {self.max}", "swap them"
            )

    def to_wire(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "aggregate": self.aggregate,
            "min": self.min,
            "max": self.max,
        }


@dataclass(frozen=True)
class Payload:
    """A program to run in a cgroup, with its default arguments and output parser.

    ``program`` is a name on the host's PATH or a path; ``package`` is the Debian
    package that provides it (named when it is missing).  In ``args``, ``{seconds}``
    becomes 60 % of the seconds left in the scenario when the payload starts,
    less 2 s to load it (so it ends and reports in time) and ``{cpus}`` the CPUs its cgroup
    may use.  ``output`` is how its
    output is read: ``exit`` (only the exit code), ``json`` (a JSON document on
    ``stream``), ``regex`` (each metric's pattern, line by line) or ``stress-ng``
    (the YAML stress-ng writes with ``--yaml``).  The default checks: exit code
    ``expect_exit`` and every metric's bounds.
    """

    name: str
    program: str
    args: tuple[str, ...] = ()
    package: str | None = None
    output: str = "exit"
    stream: str = "stdout"
    metrics: tuple[Metric, ...] = ()
    expect_exit: int | None = 0  # None: any exit code passes
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"payload name {self.name!r} is not a plain name",
                "use letters, digits, '_', '.', '+' and '-' (at most 64)",
            )
        if not self.program or "\0" in self.program:
            raise ConfigError(f"payload {self.name}: no program", "give a program name or path")
        if isinstance(self.args, (str, bytes)):
            raise ConfigError(
                f"payload {self.name}: args is one string", "give a list, e.g. ['-g', '4']"
            )
        object.__setattr__(self, "args", tuple(map(str, self.args)))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.output not in FORMATS:
            raise ConfigError(
                f"payload {self.name}: output {self.output!r} is unknown",
                f"use one of {', '.join(FORMATS)}",
            )
        if self.stream not in STREAMS:
            raise ConfigError(
                f"payload {self.name}: stream {self.stream!r} is unknown",
                f"use one of {', '.join(STREAMS)}",
            )
        if self.output == "exit" and self.metrics:
            raise ConfigError(
                f"payload {self.name} reads only its exit code, so it has no metrics",
                "give an output parser (json, regex, stress-ng) or drop the metrics",
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ConfigError(f"payload {self.name}: a metric name repeats", "name each once")
        if self.output == "regex":
            for m in self.metrics:
                try:
                    groups = re.compile(m.source).groups
                except re.error as err:
                    raise ConfigError(
                        f"payload {self.name}: metric {m.name}'s pattern is invalid ({err})",
                        "fix the regex",
                    ) from None
                if groups != 1:
                    raise ConfigError(
                        f"payload {self.name}: metric {m.name}'s pattern has {groups} groups",
                        "give exactly one group around the number",
                    )

    def with_args(self, *args: str, name: str | None = None) -> Payload:
        """The same payload with other arguments (and optionally another name)."""
        return replace(self, args=tuple(args), name=name or self.name)

    def parser_wire(self) -> dict:
        """The parser and checks as plan data: the host parses and judges from this."""
        return {
            "output": self.output,
            "stream": self.stream,
            "metrics": [m.to_wire() for m in self.metrics],
            "expect_exit": self.expect_exit,
        }
