"""The Ray Tune callback that records every trial as a nested MLflow run, from the Tune driver only.

One writer: trials never talk to MLflow. The driver turns their reports into child runs of the
sweep's parent run with explicit run ids (MlflowClient, no active run), so parallel trials cannot
race on a sqlite store. The Tune hooks only queue work; one background thread of the driver does
the MLflow calls in order (a slow store or a server restart never stalls Tune's event loop), and
`on_experiment_end` waits until everything queued is written. A logging failure (after the
client's retries) is printed as a warning and never stops the sweep.

Trials report like `rdskd_dist.tune.trainable.run_trial`: progress reports (loss terms `g/...`,
`s/...`, `iteration`, `samples_per_s`, ...) and one closing report with the final metrics and
`row`, the JSON ledger row (status, resolved config, paths of student.pt / result.json / the
final Ray Train checkpoint). Any function trainable that reports the same keys is recorded the
same way; without `row` a trial gets its metrics and its plan as params.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any, Callable, Optional

from ray.tune import Callback

from rdskd_dist.errors import one_line
from rdskd_dist.tracking import names
from rdskd_dist.tracking.artifacts import find_outputs
from rdskd_dist.tracking.client import RetryingClient
from rdskd_dist.tracking.runs import log_metrics, log_params, set_tags, standard_tags
from rdskd_dist.tracking.trials import log_finished, resolved_config

_RUN_STATUS = {"ok": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


def _plan(config: dict[str, Any], method: Optional[str]) -> dict[str, Any]:
    if isinstance(config.get("plan"), dict):
        return dict(config["plan"])
    return {"key": None, "method": method, "point": None, "seed": None, "x": dict(config.get("x") or {})}


class MlflowTrialCallback(Callback):
    """Creates a child run per trial at its start, logs each report as metrics at step `iteration`,
    and at its end the params, final metrics, files and student model, then closes the run."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep: str,
                 method: Optional[str] = None, retry_for_s: Optional[float] = None,
                 score: str = names.DEFAULT_OBJECTIVE[0]):
        self.tracking_uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self.sweep, self.method, self.retry_for_s, self.score = sweep, method, retry_for_s, score
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id (written by the writer thread only)
        self.logged_params: dict[str, dict[str, str]] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self._client: Optional[RetryingClient] = None
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None

    # Tune pickles its RunConfig (callbacks included): no client, queue or thread in that copy.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_queue": None, "_thread": None}

    @property
    def client(self) -> RetryingClient:
        if self._client is None:
            self._client = RetryingClient(self.tracking_uri, self.retry_for_s)
        return self._client

    # ------------------------------------------------------------ the writer thread
    def _submit(self, what: str, trial_id: str, fn: Callable[..., None], *args: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, name="rdskd-mlflow-writer", daemon=True)
            self._thread.start()
        self._queue.put((what, trial_id, fn, args))

    def _work(self) -> None:
        while True:
            what, trial_id, fn, args = self._queue.get()
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - never stop a sweep for its tracking
                print(f"warning: MLflow: could not {what} for trial {trial_id}: {one_line(exc)}", file=sys.stderr,
                      flush=True)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until everything queued so far is written."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.join()

    # ------------------------------------------------------------ Tune hooks (run on the driver's loop)
    def on_trial_start(self, iteration, trials, trial, **info):
        self._submit("create its run", trial.trial_id, self._start, trial.trial_id, dict(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "row" in result:  # the closing report: handled when the trial completes
            try:
                self.rows[trial.trial_id] = json.loads(result["row"])
            except (TypeError, json.JSONDecodeError):
                pass
            return
        metrics = names.progress_metrics(result)
        if metrics:
            step = int(result.get("iteration", result.get("training_iteration", 0)))
            self._submit("log metrics", trial.trial_id, self._log_progress, trial.trial_id, dict(trial.config),
                         metrics, step, int(time.time() * 1000))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._queue_close(trial, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        err = None
        try:
            err = trial.get_error()
        except Exception:  # noqa: BLE001
            pass
        self._queue_close(trial, error=one_line(err) if err is not None else "trial process failed")

    def on_experiment_end(self, trials, **info):
        self.drain()

    # ------------------------------------------------------------ the work (writer thread)
    def _start(self, trial_id: str, config: dict[str, Any]) -> str:
        if trial_id in self.runs:
            return self.runs[trial_id]
        plan = _plan(config, self.method)
        name = names.trial_run_name(plan.get("key"), plan.get("method"), trial_id)
        x = plan.get("x") or {}
        where = f"design point {plan['point']}, " if plan.get("point") is not None else ""
        mults = ", ".join(f"{k} x{v:.3g}" for k, v in x.items()) or "reference values"
        note = (f"Trial {name} of sweep {self.sweep}: method {plan.get('method')}, {where}seed {plan.get('seed')}, "
                f"{mults}. Ray Tune trial {trial_id}.")
        tags = {**standard_tags("python -m rdskd_dist.tune"), names.MLFLOW_PARENT: self.parent_run_id,
                names.TAG_RUN_TYPE: "trial", names.TAG_SWEEP: self.sweep, names.TAG_SWEEP_RUN_ID: self.parent_run_id,
                names.TAG_TRIAL_ID: trial_id, names.TAG_STATUS: "running", names.MLFLOW_NOTE: note}
        if plan.get("key"):
            tags[names.TAG_TRIAL_KEY] = plan["key"]
        if plan.get("method"):
            tags[names.TAG_METHOD] = plan["method"]
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        self.runs[trial_id] = run_id
        params = {k: v for k, v in (("method", plan.get("method")), ("seed", plan.get("seed")),
                                    ("design_point", plan.get("point"))) if v is not None}
        params.update({f"mult_{k}": v for k, v in x.items()})
        params = {k: str(v) for k, v in params.items()}
        log_params(self.client, run_id, params)
        self.logged_params[trial_id] = params
        return run_id

    def _log_progress(self, trial_id: str, config: dict[str, Any], metrics: dict[str, float], step: int,
                      timestamp_ms: int) -> None:
        run_id = self._start(trial_id, config)
        log_metrics(self.client, run_id, metrics, step=step, timestamp_ms=timestamp_ms)

    def _queue_close(self, trial, error: Optional[str]) -> None:
        last = dict(trial.last_result or {})
        row = self.rows.pop(trial.trial_id, None)
        if row is None and "row" in last:
            try:
                row = json.loads(last["row"])
            except (TypeError, json.JSONDecodeError):
                row = None
        if row is not None:
            row = {**row, "retries": getattr(trial, "num_failures", None)}
        self._submit("log its results", trial.trial_id, self._close, trial.trial_id, dict(trial.config), row, last,
                     error)

    def _close(self, trial_id: str, config: dict[str, Any], row: Optional[dict[str, Any]], last: dict[str, Any],
               error: Optional[str]) -> None:
        run_id = self._start(trial_id, config)
        try:
            self._log_end(trial_id, run_id, row, last, error)
        except Exception as exc:
            try:
                set_tags(self.client, run_id, {names.TAG_ARTIFACTS: f"incomplete: {one_line(exc)}"})
                self.client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - the original error is what gets reported
                pass
            raise
        finally:
            self.runs.pop(trial_id, None)
            self.logged_params.pop(trial_id, None)

    def _log_end(self, trial_id: str, run_id: str, row: Optional[dict[str, Any]], last: dict[str, Any],
                 error: Optional[str]) -> None:
        if row is None:
            status = "failed" if error else ("stopped" if last.get("student_progress", 1) < 1 else "failed")
            why = error or ("stopped early by the scheduler" if status == "stopped" else "ended without a final report")
            set_tags(self.client, run_id, {names.TAG_STATUS: status, names.TAG_ERROR: why})
            self.client.set_terminated(run_id, _RUN_STATUS[status])
            return
        status = row.get("status", "failed")
        config = resolved_config(row)
        extra = {names.TAG_STATUS: status, names.TAG_TRIAL_KEY: row.get("key"), names.TAG_ERROR: row.get("error"),
                 names.TAG_METHOD: row.get("method"),
                 # where the trial ran (rank 0 of its Train run) and how often Tune retried it
                 "rdskd.node_id": row.get("node_id"), "rdskd.hostname": row.get("hostname"),
                 "rdskd.retries": row.get("retries")}
        outputs = find_outputs(row.get("result_path"), row.get("checkpoint_path")) if status == "ok" else None
        result = {**last, **{k: v for k, v in row.items() if k in names.final_keys() or k in names.FINAL_RENAMES}}
        if status != "ok":  # a failed trial is never scored
            result = {k: v for k, v in result.items() if k not in names.unscored_keys(self.score)}
        log_finished(self.client, run_id, self.experiment_id, config=config, result=result, outputs=outputs,
                     title=f"{self.sweep} / {row.get('key') or trial_id}",
                     logged_params=self.logged_params.get(trial_id, {}),
                     step=row.get("iterations") or last.get("iterations"), extra_tags=extra,
                     model_name=f"student-{row.get('key') or trial_id}")
        self.client.set_terminated(run_id, _RUN_STATUS.get(status, "FAILED"))
