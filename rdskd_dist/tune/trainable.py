"""The Tune trial: a function trainable that runs one distillation and reports one ledger row.

* `trial.workers >= 1`: the trial builds a Ray Train `TorchTrainer` with the adapter's
  `build_trainer(..., callbacks=[SweepReportCallback(...)])` and fits it. The callback
  (`rdskd_dist/adapters/tune_report.py`) is Tune's `TuneReportCallback` (it forwards every Train
  report to this trial) with two changes to the forwarded metrics: the Train loop's final
  `done: 1` becomes `train_done: 1` (Tune reads `done` as "stop this trial now", which would race
  with the trial's closing report) and `student_progress` (student steps done / budget) is added
  as ASHA's time axis. (The worker's `timing_*` marks are left out: they become the row's
  `startup_s`, `train_s`, ... columns.)
* `trial.workers == 0`: the trial runs the plain-PyTorch engine in its own process
  (`run_distillation`), forwarding the same metrics with `tune.report`. (Ray Train's local mode,
  `num_workers=0`, cannot run inside a Tune trial: `ray.train.report` raises in a Tune session.)

Every trial ends with one closing report that holds the final metrics plus `row`, the JSON of
its ledger row (status ok or failed, error message, hyperparameters, paths, where it ran). A trial
never raises for a failed distillation (NaN, bad option): the failure is the row. It raises only
when its Train workers were lost (a dead node or process) and `trial.max_failures` > 0: Tune then
runs it again, and the same Train run name makes Ray Train resume from the run's last checkpoint
(`base.checkpoint_every`). The row says where rank 0 ran last (`node_id`, `hostname`), on which
nodes it ran (`nodes`), how often its Train run started (`train_starts`) and from which iteration
the last start resumed (`resumed_from_iteration`); the driver adds Tune's `retries`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Any, Optional

from rdskd_dist.adapters.train_failures import describe_error, is_lost_worker
from rdskd_dist.adapters.tune_report import SweepReportCallback, forwarded
from rdskd_dist.config import DistillConfig
from rdskd_dist.redact import redact
from rdskd_dist.tracking.names import unscored_keys
from rdskd_dist.tune.context import TrialContext
from rdskd_dist.tune.rows import TRIAL_TIMING, checked_row, outcome_columns

LOCATION_FILE = "location.json"  # in a Train run folder: where rank 0 ran, one entry per (re)start


def where_am_i() -> dict[str, Any]:
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(), "pid": os.getpid()}


def _resumed_from_iteration(checkpoint) -> Optional[int]:
    """The last iteration in a Train checkpoint's history.json (None without one)."""
    from rdskd_dist.adapters.ray_train import HISTORY_FILE

    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{HISTORY_FILE}") as stream:
            history = json.loads(stream.read().decode())
    except (OSError, ValueError):
        return None
    steps = [h["iteration"] for h in history if isinstance(h, dict) and h.get("iteration") is not None]
    return int(max(steps)) if steps else 0


def located_train_loop(config: dict[str, Any]) -> None:
    """The adapter's train loop, after rank 0 has added where it runs (node, host) and from which
    checkpoint iteration it resumes to the run folder's location.json (one entry per (re)start)."""
    import ray.train

    from rdskd_dist.adapters.ray_train import train_loop_per_worker
    from rdskd_dist.files import read_text_at, write_text_at

    if ray.train.get_context().get_world_rank() == 0:
        path = f"{config['run_name']}/{LOCATION_FILE}"
        starts = json.loads(read_text_at(config["storage"], path) or "[]")
        starts.append({**where_am_i(), "time": time.time(),
                       "resumed_from_iteration": _resumed_from_iteration(ray.train.get_checkpoint())})
        write_text_at(config["storage"], path, json.dumps(starts))
    train_loop_per_worker(config)


def _location_columns(storage: str, run_name: str) -> dict[str, Any]:
    """Row columns from a Train run's location.json: where its last start ran, how many starts it had."""
    from rdskd_dist.files import read_text_at

    try:
        starts = json.loads(read_text_at(storage, f"{run_name}/{LOCATION_FILE}") or "[]")
    except (OSError, ValueError):
        starts = []
    if not starts:
        return {}
    last = starts[-1]
    return {"node_id": last.get("node_id"), "hostname": last.get("hostname"), "train_starts": len(starts),
            "resumed_from_iteration": last.get("resumed_from_iteration"),
            "nodes": ",".join(dict.fromkeys(s.get("node_id") for s in starts if s.get("node_id")))}


def timing_columns(started: float, metrics: dict[str, Any], ended: float) -> dict[str, Any]:
    """Where a trial's wall time went (seconds), from the trial's clock and the worker's `timing_...` marks:

    * `startup_s`: trial start -> rank 0 enters the train loop (Train controller, worker group and placement
      group, the worker's Python and torch imports);
    * `setup_s`: test split, teacher, engine, checkpoint restore;  `train_s`: the engine's loop;
    * `eval_s`: student (and teacher, if `eval_teacher`) test accuracy, health;
    * `finish_s`: rank 0's outputs and final checkpoint, Train's shutdown, back in the trial;
    * `overhead_frac`: 1 - train_s / trial_wall_s;
    * `train_cpu_s`: CPU seconds rank 0's process spent while training (train_cpu_s / train_s below its
      torch threads: it waited for the CPU, e.g. other processes on the machine).
    In-process trials (`workers: 0`) have no worker marks: setup and evaluation count as `startup_s`.
    """
    wall = ended - started
    out: dict[str, Any] = {k: None for k in TRIAL_TIMING}
    out["trial_wall_s"] = round(wall, 3)
    marks = [metrics.get(f"timing_{k}") for k in ("worker_start_at", "setup_done_at", "train_done_at", "eval_done_at")]
    if all(isinstance(m, (int, float)) for m in marks):
        w0, w1, w2, w3 = (float(m) for m in marks)
        out.update(startup_s=w0 - started, setup_s=w1 - w0, train_s=w2 - w1, eval_s=w3 - w2, finish_s=ended - w3)
    elif isinstance(metrics.get("train_time_s"), (int, float)):
        out.update(train_s=float(metrics["train_time_s"]), startup_s=wall - float(metrics["train_time_s"]))
    for k in ("startup_s", "setup_s", "train_s", "eval_s", "finish_s"):
        if out[k] is not None:
            out[k] = round(max(out[k], 0.0), 3)
    if isinstance(metrics.get("timing_train_cpu_s"), (int, float)):
        out["train_cpu_s"] = round(float(metrics["timing_train_cpu_s"]), 3)
    if out["train_s"] is not None and wall > 0:
        out["overhead_frac"] = round(1.0 - out["train_s"] / wall, 4)
    return out


def _set_threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, math.floor(cpus)))


def _run_in_process(cfg: DistillConfig, ctx: TrialContext, student_steps: int) -> tuple[dict[str, Any], dict]:
    from ray import tune

    from rdskd_dist.engine.run import run_distillation

    _set_threads(ctx.spec.trial.cpus_per_worker)
    result = run_distillation(cfg, on_report=lambda m, _c: tune.report(forwarded(m, student_steps)))
    here = where_am_i()
    columns = {"result_path": str(cfg.output) if cfg.output else None, "checkpoint_path": None,
               "node_id": here["node_id"], "hostname": here["hostname"], "nodes": here["node_id"]}
    return {**result.to_dict(), "train_done": 1}, columns


def _run_on_train(cfg: DistillConfig, ctx: TrialContext, key: str, student_steps: int) -> tuple[dict[str, Any], dict]:
    from rdskd_dist.adapters.ray_train import ScaleConfig, build_trainer

    scale = ScaleConfig.of(ctx.spec.trial, max_failures=0)  # Tune, not Train, retries a trial (trial.max_failures)
    # One Train run name per trial and sweep invocation: when Tune retries the trial (its process or a
    # worker died), the same name makes Ray Train resume from the run's last checkpoint. A later
    # --resume of the sweep is a new invocation and reruns an interrupted trial from its start.
    run_name = f"{key}-{ctx.attempt}"
    from rdskd_dist.adapters.ray_train.driver import controller_can_run_here

    # decided once for both: direct reports only work where the controller really runs in this process
    in_trial = ctx.spec.trial.controller_in_trial and controller_can_run_here()
    trainer = build_trainer(cfg.model_copy(update={"output": None}), scale,
                            callbacks=[SweepReportCallback(student_steps, direct=in_trial)],
                            run_name=run_name, storage=ctx.train_storage, controller_in_process=in_trial)
    # Ray Train calls `train_loop_per_worker` at fit(); wrapping it records where rank 0 ran.
    trainer.train_loop_per_worker = located_train_loop
    result = trainer.fit()
    metrics = dict(result.metrics or {})
    if not metrics.get("done"):
        raise RuntimeError(f"Ray Train run {run_name} ended without a final result")
    metrics = forwarded(metrics, student_steps)
    columns = {"result_path": redact(f"{ctx.train_storage.rstrip('/')}/{run_name}"),  # no credentials in rows
               "checkpoint_path": result.checkpoint.path if result.checkpoint else None,
               **_location_columns(ctx.train_storage, run_name)}
    return metrics, columns


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The function trainable. `config["plan"]`: a `TrialPlan` as a dict (robustness) or `config["x"]`
    (optimize: design values from the searcher; the method and seed come from `ctx`)."""
    from ray import tune

    started = time.time()
    trial_id = tune.get_context().get_trial_id()
    plan = ctx.plan(config, trial_id)
    score = ctx.spec.objective.metric
    row: dict[str, Any] = {**ctx.first_columns(plan, trial_id), "started_at": started, "status": "failed",
                           "error": None}
    metrics: dict[str, Any] = {}
    try:
        cfg, columns = ctx.trial_config(plan)
        row.update(columns)
        if ctx.spec.trial.workers == 0:
            metrics, paths = _run_in_process(cfg, ctx, columns["budget_student_steps"])
        else:
            metrics, paths = _run_on_train(cfg, ctx, plan.key, columns["budget_student_steps"])
        row.update(paths)
        row.update(outcome_columns(metrics))
        row.update(timing_columns(started, metrics, time.time()))
        acc = metrics.get("student_accuracy")
        if acc is None or not math.isfinite(float(acc)):
            raise RuntimeError(f"no finite student accuracy in the final result (got {acc!r})")
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - every failure becomes a failed row, never a lost trial
        if ctx.spec.trial.max_failures and is_lost_worker(exc):
            raise  # a lost node or process: Tune retries the trial (FailureConfig), from its checkpoint
        row["status"], row["error"] = "failed", describe_error(exc)
        row.update(dict.fromkeys(unscored_keys(score)))  # a failed trial is never scored
        metrics = {k: v for k, v in metrics.items() if k not in unscored_keys(score)}
    row["finished_at"] = time.time()
    row = checked_row(row)
    closing = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not k.startswith("timing_")}
    if row.get(score) is not None:  # the score under its row name, for the searcher (health/x -> health_x)
        closing[score] = row[score]
    tune.report({**closing, "row_status": row["status"], "row": json.dumps(row, default=str)})
