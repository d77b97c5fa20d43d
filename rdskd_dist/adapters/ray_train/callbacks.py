"""Ray Train callbacks of a run (they run in the Train controller, on the driver's node) and the
report history they leave: a JSON-lines report log, a progress line per report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ray.train import UserCallback


class ReportLog(UserCallback):
    """Appends rank 0's metrics of every report to a JSON-lines file (on the controller's node,
    i.e. the driver's). Restarts show as repeated iterations: see `read_report_log`."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(Path(path).expanduser().resolve())

    def after_report(self, run_context, metrics, checkpoint) -> None:
        row = {**metrics[0], "checkpoint": checkpoint.path if checkpoint is not None else None}
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")


class ProgressPrinter(UserCallback):
    """Prints one line per training report with `formatter(metrics)` (skips the final result)."""

    def __init__(self, formatter: Callable[[dict[str, Any]], str]):
        self.formatter = formatter

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if "iteration" in metrics[0]:
            print(self.formatter(metrics[0]), flush=True)


def dedupe_reports(reports: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reports of a run as if it had never restarted.

    After a failure the run resumes from its last checkpoint (iteration c) and reports the
    iterations after c again; those redone reports replace the failed attempt's. Reports without
    an `iteration` (the final result) are kept as they come.
    """
    kept: list[dict[str, Any]] = []
    for report in reports:
        step = report.get("iteration")
        if step is not None:
            while kept and kept[-1].get("iteration") is not None and kept[-1]["iteration"] >= step:
                kept.pop()
        kept.append(report)
    return kept


def read_report_log(path: str | os.PathLike, dedupe: bool = True) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return dedupe_reports(rows) if dedupe else rows


__all__ = ["ReportLog", "ProgressPrinter", "dedupe_reports", "read_report_log"]
