"""The driver's side of a Ray Train run: check the options, build the TorchTrainer, fit it, and
turn a failure into one line."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ray.train import (CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig,
                       TrainingFailedError)
from ray.train.torch import TorchTrainer

from rdskd_dist.adapters.ray_connect import PG_CLEANER_ENV, init_ray
from rdskd_dist.adapters.torch_backend import LeanTorchConfig
from rdskd_dist.adapters.train_failures import root_cause
from rdskd_dist.adapters.ray_train.worker import CRASH_ENV, OUTPUT_FILES, train_loop_per_worker
from rdskd_dist.adapters.scale import ScaleConfig
from rdskd_dist.config import DistillConfig
from rdskd_dist.engine import DistillResult, health_from_flat
from rdskd_dist.errors import NonFiniteLossError, UserError, one_line
from rdskd_dist.files import atomic_copy, is_uri


class RayTrainRunError(UserError):
    """A Ray Train run failed (after its allowed restarts): one line, no traceback."""


def _idle_helper_callbacks(has_datasets: bool) -> tuple[type, ...]:
    """Ray Train's default controller callbacks that would start an actor process doing nothing useful here.

    * The dataset callback starts a `DatasetManager` actor for every run, with or without Ray Datasets; this
      engine generates its data and passes none.
    * The placement-group cleaner (a detached actor) removes a run's placement group if the controller dies,
      but finds that out through Ray's state API, which the dashboard serves. Without one it logs a warning
      every second and never cleans up; it is dropped only where `PG_CLEANER_ENV` is 0.
    Each is a process to start per run (about 1.5 s of CPU); on 2 cores the two cost a quickstart trial
    about 3 s of its startup (docs/results/README.md, session 19). Names are Ray 2.60's (pinned); another
    Ray keeps every callback.
    """
    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:  # pragma: no cover - another Ray version
        return ()
    idle: list[type] = [] if has_datasets else [DatasetsCallback]
    if os.environ.get(PG_CLEANER_ENV, "1").strip() == "0":
        idle.append(PlacementGroupCleanerCallback)
    return tuple(idle)


def controller_can_run_here() -> bool:
    """Whether `run_controller_here` can run Ray Train's controller in this process: inside an actor, on Ray 2.60's
    internals. Callers that change anything else with it (the sweep's direct Tune reports) decide on this."""
    import ray

    if ray.get_runtime_context().get_actor_id() is None:
        return False
    try:
        from ray.train.v2._internal.constants import RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR  # noqa: F401
        from ray.train.v2._internal.execution.controller import TrainController  # noqa: F401
    except ImportError:  # pragma: no cover - another Ray version
        return False
    return True


def run_controller_here(controller_kwargs: dict[str, Any]):
    """Ray Train's controller loop in this process and thread, instead of in an actor process of its own.

    Ray's `fit()` starts the controller as a new actor (a process that imports Ray and Ray Train: about 1.5-2 s of
    CPU per run) and waits on it. A sweep trial is already a long-lived process with all of that imported (Tune
    reuses it trial after trial), so the same controller object runs here. Nothing else changes: the controller
    starts the same worker group and placement group, polls them, applies the same FailureConfig and builds the
    same Result. The fate is shared as before, when the trial process owned the controller actor: if this process
    dies, its workers die with it and Tune retries the trial from the run's last checkpoint. When the loop is left
    early (Tune stops the trial from inside a report), the worker group is aborted here: the process outlives
    the trial and must not keep its workers and their CPUs.

    Only inside an actor (a Tune trial is one): Ray hands the workers `current_actor` as their controller's handle,
    which they use for nothing but `ray.train.get_all_reported_checkpoints` (this engine's loop never calls it).
    Returns `None` (run the usual controller actor) in a driver, or where Ray's internals differ from 2.60's.
    """
    if not controller_can_run_here():
        return None
    from ray.train.v2._internal.constants import (DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE,
                                                  RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR)
    from ray.train.v2._internal.execution.controller import TrainController

    # what Ray sets for its controller actor: the loop calls ray.get inside coroutines on purpose
    os.environ.setdefault(RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR, DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE)
    controller = TrainController(**controller_kwargs)
    try:
        asyncio.run(controller.run())
    finally:
        group = controller.get_worker_group()
        if group is not None:  # left early: free the workers, without hiding why the loop ended
            try:
                group.abort()
            except Exception as exc:  # noqa: BLE001
                logging.getLogger(__name__).warning("could not abort the Train worker group: %s", one_line(exc))
    return controller.get_result()


class LeanTorchTrainer(TorchTrainer):
    """A `TorchTrainer` without the helper actors that `_idle_helper_callbacks` names; otherwise the same.

    With `controller_in_process`, `fit()` runs Ray Train's controller in the calling thread
    (`run_controller_here`) instead of in an actor process of its own.
    """

    controller_in_process: bool = False

    def _create_default_callbacks(self):
        idle = _idle_helper_callbacks(bool(self.datasets))
        return [c for c in super()._create_default_callbacks() if not isinstance(c, idle)]

    def _initialize_and_run_controller(self, **controller_kwargs):
        if self.controller_in_process:
            result = run_controller_here(controller_kwargs)
            if result is not None:
                return result
        return super()._initialize_and_run_controller(**controller_kwargs)


def resolve_storage(storage: Optional[str]) -> str:
    """A URI as given, or an absolute local path (default ./runs): workers may run in another cwd."""
    if storage and is_uri(storage):
        return storage
    return str(Path(storage or "runs").expanduser().resolve())


def default_run_name(cfg: DistillConfig) -> str:
    return f"rdskd-{cfg.method}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _worker_config(cfg: DistillConfig, scale: ScaleConfig) -> DistillConfig:
    """The config the workers see: absolute paths (workers may run in another cwd), a concrete device."""
    if cfg.checkpoint is not None:
        raise UserError("--checkpoint is for in-process runs; with --workers the checkpoints live in "
                        "--storage/--run-name (start the same run name again to resume)")
    if scale.use_gpu and cfg.device == "cpu":
        raise UserError("--device cpu with --gpus-per-worker > 0: drop one of them")
    if not scale.use_gpu and cfg.device.startswith("cuda"):
        raise UserError(f"--device {cfg.device} on Ray needs --gpus-per-worker > 0")
    update: dict[str, Any] = {"device": "cuda" if scale.use_gpu else "cpu", "output": None}
    if cfg.teacher and "://" not in cfg.teacher:
        teacher = Path(cfg.teacher).expanduser().resolve()
        if not teacher.is_file():  # fail here, not after starting workers (they must see the same path)
            raise UserError(f"teacher file not found: {teacher}")
        update["teacher"] = str(teacher)
    data_root = cfg.data_root or os.environ.get("RDSKD_DATA_ROOT") or None
    if data_root:
        update["data_root"] = Path(data_root).expanduser().resolve()
    return cfg.model_copy(update=update)


def build_trainer(cfg: DistillConfig, scale: ScaleConfig, *, callbacks: Sequence[Any] = (),
                  run_name: Optional[str] = None, storage: Optional[str] = None,
                  controller_in_process: bool = False) -> LeanTorchTrainer:
    """A TorchTrainer for one distillation; `run_name` / `storage` override the ScaleConfig's.

    `callbacks` are Ray Train `UserCallback`s (e.g. Tune's `TuneReportCallback()`); they run in
    the Train controller. With `controller_in_process` the controller runs in the process that calls
    `.fit()` (see `run_controller_here`). Call `.fit()` on the result (or use `train_on_ray`).
    """
    if scale.workers < 1:
        raise UserError("Ray Train needs --workers >= 1 (0 runs in this process)")
    worker_cfg = _worker_config(cfg, scale)
    storage = resolve_storage(storage or scale.storage)
    run_name = run_name or scale.run_name or default_run_name(cfg)
    crash = os.environ.get(CRASH_ENV, "").strip()
    train_config = {
        "distill": worker_cfg.model_dump(mode="json"),
        "storage": storage, "run_name": run_name, "use_gpu": scale.use_gpu,
        # Ray sets OMP_NUM_THREADS from the CPU reservation; set torch's threads to match explicitly.
        "threads": None if scale.use_gpu else max(1, math.floor(scale.cpus_per_worker)),
        "sync_batchnorm": scale.sync_batchnorm,
        "crash_at_step": int(crash) if crash else None,
    }
    trainer = LeanTorchTrainer(
        train_loop_per_worker,
        train_loop_config=train_config,
        torch_config=LeanTorchConfig(),  # Ray's TorchConfig without torch in the controller: gloo on CPU, nccl on GPUs
        scaling_config=ScalingConfig(num_workers=scale.workers, use_gpu=scale.use_gpu,
                                     resources_per_worker=scale.per_worker()),
        run_config=RunConfig(
            name=run_name, storage_path=storage,
            failure_config=FailureConfig(max_failures=scale.max_failures),
            # Ray deletes an older checkpoint only after a newer one is stored: one is always there to resume
            # from, and a finished run keeps only its final (outputs-only) checkpoint
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=list(callbacks) or None,
            logging_config=LoggingConfig(log_level="WARNING"),  # no per-report INFO lines
        ),
    )
    trainer.controller_in_process = controller_in_process
    return trainer


def result_from_metrics(metrics: dict[str, Any]) -> DistillResult:
    fields = DistillResult.__dataclass_fields__
    return DistillResult(**{k: metrics[k] for k in fields if k in metrics and k != "health"},
                         health=health_from_flat(metrics))


def train_on_ray(cfg: DistillConfig, scale: ScaleConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Fit on Ray Train and return the final metrics (DistillResult fields, `done`, `path`, `checkpoint`).

    Starts a local Ray (or joins `scale.address` / `$RAY_ADDRESS`) if none is running. Failures end as one-line
    errors: the worker's own UserError / NonFiniteLossError, else `RayTrainRunError`. With
    `cfg.output` set, `student.pt` and `result.json` are also copied there.
    """
    _worker_config(cfg, scale)  # option errors before starting Ray
    init_ray(address=scale.address)
    trainer = build_trainer(cfg, scale, callbacks=callbacks)
    name = trainer.run_config.name
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        cause = root_cause(exc)
        if isinstance(cause, (UserError, NonFiniteLossError)):
            raise cause from None
        raise RayTrainRunError(f"Ray Train run {name} failed: {one_line(cause)}") from None
    metrics = dict(result.metrics or {})
    if not metrics.get("done"):
        raise RayTrainRunError(f"Ray Train run {name} ended without a final result")
    if cfg.output is not None and result.checkpoint is not None:
        with result.checkpoint.as_directory() as folder:
            for file in OUTPUT_FILES:
                atomic_copy(Path(folder) / file, cfg.output / file)
    metrics["path"] = result.path
    metrics["checkpoint"] = result.checkpoint.path if result.checkpoint else None
    return metrics


__all__ = ["PG_CLEANER_ENV", "LeanTorchTrainer", "RayTrainRunError", "build_trainer", "default_run_name",
           "resolve_storage", "result_from_metrics", "train_on_ray"]
