"""Progress of many VMs: a live ``rich`` display on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType


class GauntletProgress:
    """Counts running / passed / failed / remaining and estimates the time left."""

    def __init__(self, total: int, jobs: int) -> None:
        self.total, self.jobs = total, jobs
        self.started = time.monotonic()
        self.running = self.passed = self.failed = self.other = 0
        self.live = sys.stdout.isatty()
        self._progress = None
        self._task = None

    def __enter__(self) -> GauntletProgress:
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("ETA {task.fields[eta]}"),
            )
            self._progress.start()
            self._task = self._progress.add_task(self._status(), total=self.total, eta="?")
        return self

    def __exit__(
        self, kind: type | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    @property
    def done(self) -> int:
        return self.passed + self.failed + self.other

    def _status(self) -> str:
        left = self.total - self.done - self.running
        return (
            f"running {self.running} · passed {self.passed} · failed {self.failed} · "
            f"remaining {left}"
        )

    def eta(self) -> str:
        if not self.done:
            return "?"
        per = (time.monotonic() - self.started) / self.done
        seconds = per * (self.total - self.done)
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    def started_one(self) -> None:
        self.running += 1
        self._refresh()

    def finished_one(self, verdict: str, line: str) -> None:
        self.running -= 1
        if verdict == "pass":
            self.passed += 1
        elif verdict == "fail":
            self.failed += 1
        else:
            self.other += 1
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)
        self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, description=self._status(), completed=self.done, eta=self.eta()
            )
