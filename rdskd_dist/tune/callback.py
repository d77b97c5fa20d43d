"""The Tune callback of a sweep, on the driver: each finished trial's ledger row and the status line.

A trial sends its row in its closing report; a trial that never did (stopped early, or its process
died) gets a row built here from its plan, with what its mode says about it (`unreported`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

from ray.tune import Callback

from rdskd_dist.adapters.train_failures import describe_error
from rdskd_dist.errors import one_line
from rdskd_dist.redact import redact
from rdskd_dist.tune.context import TrialContext
from rdskd_dist.tune.design import TrialPlan, shared_row
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.modes import mode_of
from rdskd_dist.tune.progress import ProgressLine
from rdskd_dist.tune.rows import checked_row
from rdskd_dist.tune.storage import SweepStorage


def add_launch_time(row: dict[str, Any], tune_started: Optional[float]) -> None:
    """`launch_s` (Tune starts the trial -> the trial's function runs: its actor and imports) and the
    overhead fraction over the whole trial, launch included."""
    if tune_started is None or not isinstance(row.get("started_at"), (int, float)):
        return
    row["launch_s"] = round(max(float(row["started_at"]) - tune_started, 0.0), 3)
    wall, train = row.get("trial_wall_s"), row.get("train_s")
    if isinstance(wall, (int, float)) and isinstance(train, (int, float)) and wall + row["launch_s"] > 0:
        row["overhead_frac"] = round(1.0 - train / (wall + row["launch_s"]), 4)


class SweepCallback(Callback):
    """Runs on the Tune driver: writes each finished trial's ledger row, keeps the status line."""

    def __init__(self, folder: SweepFolder, ctx: TrialContext, progress: Optional[ProgressLine],
                 storage: Optional[SweepStorage] = None, shared: Optional[dict[str, list[TrialPlan]]] = None):
        self.folder, self.ctx, self.progress, self.storage = folder, ctx, progress, storage
        self.shared = shared or {}  # a trial's key -> the plans that repeat its result (design.shared_trials)
        self.rows: dict[str, dict[str, Any]] = {}
        self.started: dict[str, float] = {}
        self.storage_warned = False

    def __getstate__(self):  # Tune pickles its run config into the experiment state: leave the console out
        return {**self.__dict__, "progress": None}

    @property
    def spec(self):
        return self.ctx.spec

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()
        if self.progress is not None:
            self.progress.trial_started()

    def on_trial_recover(self, iteration, trials, trial, **info):
        # The trial's process or its Train workers died (a lost node): Tune runs it again (FailureConfig).
        self.rows.pop(trial.trial_id, None)
        if self.progress is not None:
            self.progress.trial_retrying()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "row" in result:
            self.rows[trial.trial_id] = json.loads(result["row"])

    def _fallback(self, trial, status: str, error: str) -> dict[str, Any]:
        """A row for a trial that never sent its closing report (stopped early, or its process died)."""
        plan = self.ctx.plan(trial.config, trial.trial_id)
        last = trial.last_result or {}
        row = {**self.ctx.first_columns(plan, trial.trial_id), "status": status, "error": error,
               "started_at": self.started.get(trial.trial_id), "finished_at": time.time(),
               "iterations": last.get("iteration"), "generator_steps": last.get("g_step"),
               "student_steps": last.get("s_step")}
        try:
            row.update(self.ctx.trial_config(plan)[1])
        except Exception:  # noqa: BLE001 - an invalid point: the row keeps its design values only
            pass
        return row

    def _finish(self, row: dict[str, Any], trial) -> None:
        row["retries"] = trial.num_failures if self.spec.trial.max_failures else 0
        add_launch_time(row, self.started.get(trial.trial_id))
        row = checked_row(row)
        self.folder.record(row)
        copies = [checked_row(shared_row(row, plan, self.spec)) for plan in self.shared.get(row["key"], [])]
        for copy in copies:
            self.folder.record(copy)
        self.folder.write_parquet(design_columns=[k for k, d in self.spec.space.items() if d.relative])
        self._copy_to_storage([row, *copies])
        if self.progress is not None:
            self.progress.trial_finished(row)

    def _copy_to_storage(self, rows: list[dict[str, Any]]) -> None:
        """The new ledger rows and results.parquet, so that results survive the driver machine."""
        if self.storage is None:
            return
        try:
            self.storage.upload(self.folder.path, [*(f"ledger/{row['key']}.json" for row in rows), "results.parquet"])
        except Exception as exc:  # noqa: BLE001 - the local ledger stays the source of truth
            if not self.storage_warned:
                print(f"warning: could not copy results to {redact(self.storage.sweep_uri())}: {one_line(exc)}",
                      file=sys.stderr, flush=True)
                self.storage_warned = True

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self.rows.pop(trial.trial_id, None)
        if row is None:
            row = self._fallback(trial, *mode_of(self.spec).unreported(self.spec, trial.last_result or {}))
        self._finish(row, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        row = self.rows.pop(trial.trial_id, None)
        if row is None:
            err = trial.get_error()
            row = self._fallback(trial, "failed", describe_error(err) if err is not None else "trial process failed")
        self._finish(row, trial)
