"""Payload ops compiled against the plan: instances with ids, arguments filled in.

A payload instance is named by its cgroup and its name (the payload's own,
or the one ``Op.run_payload`` gives); that pair names its metrics, so it is
unique in a plan.  ``wait_payload`` and ``kill_payload`` find the instance
running at their step, by name and, when the name is not enough, cgroup.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ktstr.errors import ConfigError
from ktstr.payloads.model import Payload
from ktstr.payloads.pack import guest_program

MAX_INSTANCES = 16  # per plan: each may send up to 512 KiB of output
# {seconds}: this share of the time left, less the time an emulated guest takes to load and
# start a large program (1.5 to 3 s for stress-ng on 2 busy vCPUs), so it reports in time.
SECONDS_SHARE = 0.6
START_MARGIN_S = 2.0
OPS = ("run_payload", "wait_payload", "kill_payload")


class PayloadPlanner:
    """The payload instances of one plan and which of them run at the current step."""

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self.now = 0.0  # the scenario time of the round being compiled
        self.entries: list[dict] = []
        self.live: dict[int, dict] = {}

    def run(self, path: str, payload: Payload, name: str | None, cpus: int) -> dict:
        """The op starting ``payload`` in the cgroup at ``path``."""
        name = name or payload.name
        if any(e["cgroup"] == path and e["name"] == name for e in self.entries):
            raise ConfigError(
                f"payload {name} runs twice in cgroup {path}",
                "give the second run its own name: Op.run_payload(cgroup, payload, name='...')",
            )
        if len(self.entries) >= MAX_INSTANCES:
            raise ConfigError(
                f"the scenario runs more than {MAX_INSTANCES} payloads", "run fewer payloads"
            )
        left = self.duration_s - self.now
        seconds = max(1, math.floor(SECONDS_SHARE * left - START_MARGIN_S))
        try:
            args = [a.format(seconds=seconds, cpus=cpus) for a in payload.args]
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                f"payload {payload.name}: an argument has an unknown placeholder ({err})",
                "use only {seconds} and {cpus}, and write a literal brace as {{ or }}",
            ) from None
        entry = {
            "id": len(self.entries),
            "name": name,
            "cgroup": path,
            "payload": payload.name,
            "program": payload.program,
            "package": payload.package,
            "args": args,
            "started_s": round(self.now, 6),
            "parser": payload.parser_wire(),
        }
        self.entries.append(entry)
        self.live[entry["id"]] = entry
        argv = [guest_program(payload.program), *args]
        return {"op": "run_payload", "path": path, "id": entry["id"], "name": name, "argv": argv}

    def find(self, name: str, path: str | None) -> dict:
        """The running instance called ``name`` (in the cgroup at ``path``, if given)."""
        found = [e for e in self.live.values() if e["name"] == name and path in (None, e["cgroup"])]
        if len(found) != 1:
            where = f" in cgroup {path}" if path else ""
            running = ", ".join(f"{e['name']} ({e['cgroup']})" for e in self.live.values())
            what = "no payload" if not found else "more than one payload"
            raise ConfigError(
                f"{what} named {name}{where} runs at this step",
                f"name one of: {running or 'none runs'}"
                + ("; give its cgroup too" if found else ""),
            )
        return found[0]

    def op(
        self,
        kind: str,
        target: str,
        args: tuple,
        find_cgroup: Callable[[str], str],
        cpus_of: Callable[[str], int],
    ) -> dict:
        """A run, wait or kill op; ``find_cgroup`` resolves a cgroup name to its path,
        ``cpus_of`` counts the CPUs a cgroup may use."""
        if kind == "run_payload":
            payload, name = args
            path = find_cgroup(target)
            return self.run(path, payload, name, cpus_of(path))
        entry = self.find(args[0], find_cgroup(target) if target else None)
        del self.live[entry["id"]]
        return {"op": kind, "path": entry["cgroup"], "ids": [entry["id"]]}

    def removed(self, path: str) -> None:
        """A cgroup and its subtree went away, with the payloads in it."""
        for i, e in list(self.live.items()):
            if e["cgroup"] == path or e["cgroup"].startswith(path + "/"):
                del self.live[i]
