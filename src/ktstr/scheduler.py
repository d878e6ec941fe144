"""The scheduler under test: a sched_ext binary with arguments and flag profiles.

``EEVDF`` is the built-in "no scheduler": the kernel's own fair class,
every comparison's baseline.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ktstr import paths
from ktstr.errors import ConfigError, EnvironmentProblem
from ktstr.topology import Topology, as_topology

BUILD_HINT = "run 'ktstr schedulers build' (or pass the binary's path)"


@dataclass(frozen=True)
class Flag:
    """One optional behaviour of a scheduler: its arguments and its constraints."""

    args: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """A valid combination of flags: ``default`` (none) or ``a+b``."""

    name: str
    flags: tuple[str, ...]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Scheduler:
    name: str
    binary: str | None = None  # a name found by discovery, or a path; None: EEVDF
    args: tuple[str, ...] = ()
    flags: dict[str, Flag] = field(default_factory=dict)
    topology: Topology | str = "1n2l2c1t"
    sysctls: dict[str, str] = field(default_factory=dict)
    kernel_args: tuple[str, ...] = ()
    watchdog_timeout_s: float | None = None
    # How this scheduler takes a watchdog timeout, "{ms}" replaced (sched_ext has no sysctl
    # for it: each scheduler sets ops.timeout_ms), e.g. ("--timeout-ms", "{ms}").
    watchdog_args: tuple[str, ...] = ()
    ops_name: str | None = None  # what /sys/kernel/sched_ext/root/ops says; default: name sans scx_
    # A host config file packed into the guest (/include-files/<name>) and passed with
    # config_arg: "--config" gives ("--config", path), "--config=" gives "--config=path".
    config_file: str | None = None
    config_arg: str | None = None

    def __post_init__(self) -> None:
        if self.config_file is not None and not self.config_arg:
            raise ConfigError(
                f"scheduler {self.name} has a config_file but no config_arg",
                "say how it takes the file, e.g. config_arg='--config'",
            )
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kernel_args", tuple(self.kernel_args))
        object.__setattr__(self, "topology", as_topology(self.topology))
        for fname, flag in self.flags.items():
            for other in flag.requires + flag.excludes:
                if other not in self.flags:
                    raise ConfigError(
                        f"scheduler {self.name}: flag {fname} names unknown flag {other!r}",
                        "declare every flag it refers to",
                    )

    @property
    def is_eevdf(self) -> bool:
        return self.binary is None

    @property
    def expected_ops(self) -> str:
        base = Path(self.binary or self.name).name
        return self.ops_name or (base[4:] if base.startswith("scx_") else base)

    def profiles(self) -> list[Profile]:
        """Every valid flag combination (power set filtered by requires/excludes)."""
        names = sorted(self.flags)
        out = []
        for size in range(len(names) + 1):
            for combo in itertools.combinations(names, size):
                chosen = set(combo)
                if any(not set(self.flags[f].requires) <= chosen for f in combo):
                    continue
                if any(set(self.flags[f].excludes) & chosen for f in combo):
                    continue
                args = (
                    self.args
                    + self.watchdog()
                    + tuple(a for f in combo for a in self.flags[f].args)
                )
                out.append(Profile("+".join(combo) or "default", combo, args))
        return out

    def config_files(self) -> tuple[str, ...]:
        """The host files this scheduler needs in the guest."""
        return () if self.config_file is None else (self.config_file,)

    def config_args(self) -> tuple[str, ...]:
        """The option that points the scheduler at its packed config file, or ()."""
        if self.config_file is None or not self.config_arg:
            return ()
        from ktstr.initramfs.include import guest_path

        where = guest_path(self.config_file)
        if self.config_arg.endswith("="):
            return (self.config_arg + where,)
        return (self.config_arg, where)

    def watchdog(self) -> tuple[str, ...]:
        if self.watchdog_timeout_s is None:
            return ()
        if not self.watchdog_args:
            raise ConfigError(
                f"scheduler {self.name} sets watchdog_timeout_s but not how to pass it",
                "give watchdog_args such as ('--timeout-ms', '{ms}')",
            )
        ms = str(round(self.watchdog_timeout_s * 1000))
        return tuple(a.replace("{ms}", ms) for a in self.watchdog_args)

    def profile(self, spec: str | None) -> Profile:
        """A profile by ``a,b`` / ``a+b`` / ``default``; the flags must form a valid one."""
        wanted = tuple(sorted(f for f in re.split(r"[,+]", spec or "") if f and f != "default"))
        unknown = [f for f in wanted if f not in self.flags]
        if unknown:
            raise ConfigError(
                f"scheduler {self.name} has no flag {unknown[0]!r}",
                f"its flags are {', '.join(sorted(self.flags)) or 'none'}",
            )
        for p in self.profiles():
            if tuple(sorted(p.flags)) == wanted:
                return p
        raise ConfigError(
            f"flags {'+'.join(wanted)} are not a valid combination for "
            f"{self.name} (requires/excludes)",
            "see the scheduler's flag rules",
        )

    def resolve_binary(self, release: str | None = None) -> Path:
        """Find the binary: explicit path, KTSTR_SCHEDULER_BIN_<NAME>, KTSTR_SCHEDULER,
        $PATH, then ktstr's cache of built schedulers."""
        if self.binary is None:
            raise ConfigError("EEVDF has no binary", "run without --scheduler")
        if "/" in self.binary:
            path = Path(self.binary).expanduser()
            if not path.is_file():
                raise ConfigError(f"scheduler binary {path} does not exist", "check the path")
            return path
        env_name = "KTSTR_SCHEDULER_BIN_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())
        for var in (env_name, "KTSTR_SCHEDULER"):
            value = os.environ.get(var)
            if (
                value
                and Path(value).is_file()
                and (var == env_name or Path(value).name == self.binary)
            ):
                return Path(value)
        found = shutil.which(self.binary)
        if found:
            return Path(found)
        cached = find_built(self.binary, release)
        if cached:
            return cached
        raise EnvironmentProblem(f"scheduler binary {self.binary} was not found", BUILD_HINT)


EEVDF = Scheduler("eevdf", binary=None)


def built_root() -> Path:
    return paths.cache_dir() / "schedulers"


def find_built(binary: str, release: str | None = None) -> Path | None:
    """The newest cached build of ``binary`` (for ``release`` when given).

    Builds made with a newer compiler win: the kernel's verifier rejects
    some programs an older clang emits (scx_qmap with clang 19).
    """
    root = built_root()
    if not root.is_dir():
        return None
    candidates = []
    for rel_dir in root.iterdir():
        if release and rel_dir.name != release:
            continue
        for comp_dir in rel_dir.iterdir():
            path = comp_dir / "bin" / binary
            if path.is_file():
                version = int(re.sub(r"\D", "", comp_dir.name) or 0)
                candidates.append((version, path))
    return max(candidates)[1] if candidates else None


def from_cli(name: str | None, extra_args: list[str] | None = None) -> Scheduler:
    """``--scheduler scx_simple`` or a path; ``eevdf`` (or nothing) for the baseline."""
    if not name or name.lower() == "eevdf":
        return EEVDF
    base = Path(name).name
    return Scheduler(base, binary=name, args=tuple(extra_args or ()))
