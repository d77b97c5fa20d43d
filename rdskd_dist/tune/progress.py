"""One compact status line while a sweep runs: trials done / running / failed and the best score so far.

On a terminal the line is redrawn in place (rich Live); otherwise (logs, CI, pipes) one line is
printed each time a trial finishes.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from rich.console import Console
from rich.text import Text

from rdskd_dist.tune.score import Objective


class ProgressLine:
    """`slots`: trials Tune runs at a time. A trial's finish frees a slot that Tune fills with the next
    pending trial right after the callbacks return, so the line printed at a finish counts that trial as
    running (it used to say "1 running" while two ran)."""

    def __init__(self, name: str, total: int, console: Optional[Console] = None, done: int = 0, failed: int = 0,
                 stopped: int = 0, best: Optional[tuple[float, str]] = None, slots: Optional[int] = None,
                 to_run: Optional[int] = None, score: Optional[Objective] = None):
        self.name, self.total, self.slots = name, total, slots
        self.score = score or Objective()
        self.left = total - done if to_run is None else to_run  # trials this invocation has yet to finish
        self.console = console or Console(stderr=True)
        self.done, self.failed, self.stopped, self.running = done, failed, stopped, 0
        self.best = best
        self.start = time.monotonic()
        self._live = None

    # ------------------------------------------------------------ events
    def trial_started(self) -> None:
        self.running += 1
        self._refresh()

    def trial_retrying(self) -> None:
        """A running trial failed and Tune will start it again (counted once more by trial_started)."""
        self.running = max(0, self.running - 1)
        self._refresh()

    def trial_finished(self, row: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.left = max(0, self.left - 1)
        if row.get("status") == "stopped":
            self.stopped += 1
        elif row.get("status") != "ok":
            self.failed += 1
        elif (value := self.score.value(row)) is not None and (self.best is None or self.score.better(value, self.best[0])):
            self.best = (value, row["key"])
        if self._live is None:
            self.console.print(self.line(row, running=self.expected_running()), highlight=False)
        self._refresh()

    def expected_running(self) -> int:
        """Trials running once Tune has refilled the freed slot: the ones still running plus pending ones
        up to `slots` (never more than the trials left)."""
        if self.slots is None:
            return self.running
        return max(self.running, min(self.slots, self.left))

    # ------------------------------------------------------------ rendering
    def line(self, last: Optional[dict[str, Any]] = None, running: Optional[int] = None) -> str:
        elapsed = int(time.monotonic() - self.start)
        parts = [f"{self.name}: {self.done}/{self.total} done"]
        bad = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.stopped, "stopped early")) if n]
        if bad:
            parts[0] += f" ({', '.join(bad)})"
        parts.append(f"{self.running if running is None else running} running")
        parts.append(f"best {self.score.format(self.best[0])} {self.best[1]}" if self.best else "best -")
        if last is not None:
            value = self.score.value(last)
            what = self.score.format(value) if value is not None else last.get("status")
            parts.append(f"last {last['key']} {what}")
        parts.append(f"{elapsed // 60}m{elapsed % 60:02d}s")
        return " · ".join(parts)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(Text(self.line()))

    def __enter__(self) -> "ProgressLine":
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(Text(self.line()), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(Text(self.line()))
            self._live.__exit__(*exc)
            self._live = None
