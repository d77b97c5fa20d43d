"""Ray Train adapter: the same engine (`Distiller`) on N data-parallel Ray workers.

A thin layer at the engine's edge: the engine knows nothing of Ray; this module hands it a DDP
`wrap` function, a report callback that calls `ray.train.report` and restores its `state_dict()`
from `ray.train.get_checkpoint()`.

Data parallelism and the learning-rate rule
    Every worker generates its own `batch_size` samples per step (its own latent noise, seed +
    rank, drawn by the engine), so the **effective batch is `batch_size x workers`**. DDP
    averages the generator's and the student's gradients over the workers. **Learning rates are
    kept exactly as given** (no linear scaling with the number of workers): averaging gradients
    of N independent batches lowers their variance but keeps their scale, and the reference
    optimisers here are mostly Adam, which is insensitive to gradient scale. Scale
    `lr_generator` / `lr_student` yourself if you want the linear-scaling rule. Batch-level loss
    terms (information entropy, inter-sample diversity, BN statistics) are computed over each
    worker's own batch, as in single-process runs of `batch_size`.

What is wrapped
    DDP wraps the generator and the student only; the frozen teacher is never wrapped (DDP
    refuses modules without trainable parameters). gloo on CPU, nccl on GPU (TorchConfig's
    default backend). SyncBatchNorm (`sync_batchnorm`) is applied on GPU only.

Checkpoints, resume and failures
    Every `checkpoint_every` steps (a DistillConfig option) rank 0 writes the engine state as
    `engine.pt` (torch.save of tensors and plain values only; loaded back with
    `torch.load(weights_only=True)`) plus `history.json` (the reports so far) into a temporary
    folder and reports it; the other ranks report `checkpoint=None`. The per-rank parts of the
    state (latent-noise RNG, torch/python RNG, the method's per-rank state such as RDSKD's
    penalty references, each rank's BN running statistics of the generator and the student) are
    gathered from every rank into `engine.pt` so that a resumed run continues bit-identically on
    every rank. On a (re)start each worker restores from
    `ray.train.get_checkpoint()`: after a worker failure (`FailureConfig(max_failures)`), and
    when a run is started again with the same `run_name` and `storage`. Reports made after the
    last checkpoint by a failed attempt are made again by the next one: `dedupe_reports` drops
    the superseded ones (the checkpoint's `history.json` never contains them).

Outputs
    At the end every rank evaluates its shard of the test split (all-reduced by the engine),
    rank 0 writes `student.pt`, `result.json`, `engine.pt` and `history.json` into the final
    checkpoint and copies `student.pt` and `result.json` into the run folder
    `<storage>/<run_name>/` (rdskd_dist/files.py: any pyarrow URI works), and every rank makes a last
    `ray.train.report({**result, "done": 1}, checkpoint=...)`: `Result.metrics` of the fit holds
    `student_accuracy`, `teacher_accuracy`, ... (Ray Train V2 keeps the metrics of reports that
    carry a checkpoint).

Fault injection for tests: `RDSKD_CRASH_AT_STEP=k` in the driver's environment makes rank 1
(rank 0 with one worker) `os._exit(1)` at the first report at or after iteration k (before making
it), once per run: a marker file `.crash-injected` in the run folder keeps it from firing again.

Why no step is lost or counted twice: Ray resumes from the latest checkpoint the controller has
registered, and reports reach the controller in order, so every report up to that checkpoint was
delivered exactly once. Reports after it are either lost with the failed workers (the controller
polls each worker's one-slot report queue every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default)
or delivered; both ways the next attempt makes them again, bit-identically, and `dedupe_reports`
keeps the last copy.

Report cadence: a worker's `ray.train.report` blocks while its previous report has not been
polled, so reports closer than that interval (2 s) slow training down. Keep `log_every` at a
few seconds of training or more, or lower RAY_TRAIN_HEALTH_CHECK_INTERVAL_S in the driver's
environment (Ray passes it on to the controller and the workers), as the tests do.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import torch

from rdskd_dist.adapters.ray_connect import connect_ray
from rdskd_dist.adapters.scale import ScaleConfig
from rdskd_dist.config import DistillConfig
from rdskd_dist.engine.health import flat_health, health_from_flat
from rdskd_dist.engine.loop import DistillResult, Distiller, to_device, unwrap
from rdskd_dist.engine.run import finish, note_teacher, prepare_teacher, write_outputs
from rdskd_dist.errors import NonFiniteLossError, UserError, one_line
from rdskd_dist.files import (atomic_copy, atomic_write_json, is_uri, join, open_filesystem, path_kind, put_bytes,
                              put_file, read_json, safe_torch_load)

if TYPE_CHECKING:  # ray is imported lazily: `--workers 0` runs never pay for it
    from ray.train.torch import TorchTrainer

CRASH_ENV = "RDSKD_CRASH_AT_STEP"
CRASH_MARKER = ".crash-injected"
ENGINE_FILE, HISTORY_FILE = "engine.pt", "history.json"
OUTPUT_FILES = ("student.pt", "result.json")
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}


# ---------------------------------------------------------------- storage helpers

def resolve_storage(storage: Optional[str]) -> str:
    """A URI as given, or an absolute local path (default ./runs): workers may run in another cwd."""
    if storage and is_uri(storage):
        return storage
    return str(Path(storage or "runs").expanduser().resolve())


def _run_dir(storage: str, run_name: str) -> tuple[Any, str]:
    fs, root = open_filesystem(storage)
    return fs, join(root, run_name)


def _put_files(src_dir: Path, names: Iterable[str], storage: str, run_name: str) -> None:
    """Copy files into `<storage>/<run_name>/` (a reader never sees a half-written file)."""
    fs, run_dir = _run_dir(storage, run_name)
    fs.create_dir(run_dir, recursive=True)
    for name in names:
        put_file(src_dir / name, fs, join(run_dir, name))


def _claim_marker(storage: str, run_name: str) -> bool:
    """Create the crash marker of a run; False if it already exists (the crash already fired)."""
    fs, run_dir = _run_dir(storage, run_name)
    path = join(run_dir, CRASH_MARKER)
    if path_kind(fs, path) is not None:
        return False
    put_bytes(b"crash injected by RDSKD_CRASH_AT_STEP\n", fs, path)
    return True


# ---------------------------------------------------------------- per-rank state

def _module_buffers(engine: Distiller) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: v.detach().cpu().clone() for k, v in unwrap(module).named_buffers()}
            for name, module in (("generator", engine.generator), ("student", engine.student))}


def _gather_rank_state(engine: Distiller, state: dict[str, Any], world_size: int) -> dict[str, Any]:
    """Collective: add every rank's own state to rank 0's engine state, as `ranks[r]`.

    Per rank: the RNGs (latent noise differs by rank), the method's state (e.g. RDSKD's penalty
    references follow each rank's own losses) and the BN running statistics of the generator
    and the student (DDP broadcasts rank 0's at each wrapped forward, then each rank updates
    them with its own batch; a frozen generator in eval mode uses each rank's own).
    """
    import torch.distributed as dist

    mine = to_device({"rng": state["rng"], "method": state["method"]}, torch.device("cpu"))
    mine["buffers"] = _module_buffers(engine)
    if world_size > 1 and dist.is_initialized():
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    return {**state, "ranks": gathered}


def _restore(engine: Distiller, state: dict[str, Any], rank: int) -> None:
    ranks = state.get("ranks") or []
    if rank < len(ranks):  # this rank's own RNG and method state
        state = {**state, **ranks[rank]}
    elif rank > 0:  # more workers than when the checkpoint was written: fresh noise for this rank
        state = {**state, "rng": {**state["rng"], "noise": torch.Generator().manual_seed(
            engine.cfg.seed * 1000 + rank + 7919 * state["iteration"]).get_state()}}
    state = {**state, "method": to_device(state["method"], engine.device)}
    engine.load_state_dict(state)
    own = ranks[rank]["buffers"] if rank < len(ranks) and "buffers" in ranks[rank] else {}
    for name, module in (("generator", engine.generator), ("student", engine.student)):
        saved = own.get(name, {})
        with torch.no_grad():
            for key, buffer in unwrap(module).named_buffers():
                if key in saved:
                    buffer.copy_(saved[key])


def _sync_buffers(module: torch.nn.Module, world_size: int) -> None:
    """Give every rank rank 0's BN running statistics, so the sharded evaluation scores the saved model."""
    import torch.distributed as dist

    if world_size > 1 and dist.is_initialized():
        for buffer in unwrap(module).buffers():
            dist.broadcast(buffer, src=0)


# ---------------------------------------------------------------- the worker

def _worker_device(use_gpu: bool) -> torch.device:
    if not use_gpu:
        return torch.device("cpu")
    import ray.train.torch

    device = ray.train.torch.get_device()
    return device[0] if isinstance(device, list) else device


def _make_wrap(device: torch.device, world_size: int, sync_batchnorm: bool) -> Callable[[torch.nn.Module], torch.nn.Module]:
    import ray.train.torch

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if sync_batchnorm and device.type == "cuda" and world_size > 1:
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        # DDP only when world_size > 1; the engine has already put the module on its device.
        return ray.train.torch.prepare_model(module, move_to_device=False)

    return wrap


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: build the engine, restore, train, evaluate, write outputs.

    `config` holds `distill` (a DistillConfig as JSON), `storage`, `run_name`, `use_gpu`,
    `threads`, `sync_batchnorm` and `crash_at_step` (see `build_trainer`).
    """
    import ray.train
    import torch.distributed as dist
    from ray.train import Checkpoint

    from rdskd_dist.data import get_spec, load_split

    wall_start = time.perf_counter()
    started_at = time.time()  # epoch seconds: the trial turns these into its startup/setup/train/eval split
    cfg = DistillConfig.model_validate(config["distill"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = _worker_device(config["use_gpu"])
    storage, run_name = config["storage"], config["run_name"]

    spec = get_spec(cfg.dataset)
    if cfg.download and world_size > 1 and dist.is_initialized():  # one rank downloads, the others wait
        if rank == 0:
            load_split(cfg.dataset, "test", cfg.data_root, download=True)
        dist.barrier()
    test_data = load_split(cfg.dataset, "test", cfg.data_root, download=cfg.download)
    teacher, teacher_meta = prepare_teacher(cfg)
    engine = Distiller(cfg, teacher, spec, device, rank=rank, world_size=world_size,
                       wrap=_make_wrap(device, world_size, config.get("sync_batchnorm", False)))
    if rank == 0:
        note_teacher(teacher)

    history: list[dict[str, Any]] = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            _restore(engine, safe_torch_load(Path(folder) / ENGINE_FILE, "checkpoint"), rank)
            history_path = Path(folder) / HISTORY_FILE
            if history_path.is_file():
                history = read_json(history_path)

    crash_at = config.get("crash_at_step")
    crash_rank = 1 if world_size > 1 else 0

    def report(metrics: dict[str, float], state: Optional[dict[str, Any]]) -> None:
        if crash_at and rank == crash_rank and metrics["iteration"] >= crash_at and _claim_marker(storage, run_name):
            # Die hard, as a killed process or a lost node would, mid-interval: after one controller
            # poll, so that the reports made so far have reached the controller and its callbacks.
            time.sleep(1.5 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)) + 0.5)
            os._exit(1)
        history.append(metrics)
        if state is None:
            ray.train.report(metrics)  # a barrier: every rank reports every time
            return
        state = _gather_rank_state(engine, state, world_size)  # collective, on every rank
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="rdskd-ckpt-") as folder:
            torch.save(state, Path(folder) / ENGINE_FILE)
            atomic_write_json(history, Path(folder) / HISTORY_FILE)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    setup_at, setup_cpu = time.time(), time.process_time()
    engine.run(report)
    trained_at, train_cpu = time.time(), time.process_time() - setup_cpu

    _sync_buffers(engine.student, world_size)
    result = finish(engine, teacher_meta, test_data, wall_start)
    # health as scalar `health/...` metrics (its class histogram travels in result.json)
    final_metrics = {**{k: v for k, v in result.to_dict().items() if k != "health"}, **flat_health(result.health),
                     # when this worker entered the loop, finished its setup (data, teacher, engine, restore),
                     # training and evaluation (time.time(), this worker's clock)
                     "timing_worker_start_at": started_at, "timing_setup_done_at": setup_at,
                     "timing_train_done_at": trained_at, "timing_eval_done_at": time.time(),
                     # CPU seconds of this process while training (all its threads): / train wall = CPU share
                     "timing_train_cpu_s": train_cpu, "done": 1}
    state = _gather_rank_state(engine, engine.state_dict(), world_size)
    if rank != 0:
        ray.train.report(final_metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="rdskd-final-") as tmp:
        folder = Path(tmp)
        write_outputs(folder, engine, result, teacher_meta)  # student.pt + result.json
        torch.save(state, folder / ENGINE_FILE)  # the same run name resumes to the end, not from scratch
        atomic_write_json(history, folder / HISTORY_FILE)
        _put_files(folder, OUTPUT_FILES, storage, run_name)
        ray.train.report(final_metrics, checkpoint=Checkpoint.from_directory(tmp))


# ---------------------------------------------------------------- the driver

def default_run_name(cfg: DistillConfig) -> str:
    return f"rdskd-{cfg.method}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _worker_config(cfg: DistillConfig, scale: ScaleConfig) -> DistillConfig:
    """The config the workers see: absolute paths (workers may run in another cwd), a concrete device."""
    if cfg.checkpoint is not None:
        raise UserError("--checkpoint is for in-process runs; with --workers the checkpoints live in "
                        "--storage/--run-name (start the same run name again to resume)")
    use_gpu = scale.gpus_per_worker > 0
    if use_gpu and cfg.device == "cpu":
        raise UserError("--device cpu with --gpus-per-worker > 0: drop one of them")
    if not use_gpu and cfg.device.startswith("cuda"):
        raise UserError(f"--device {cfg.device} on Ray needs --gpus-per-worker > 0")
    update: dict[str, Any] = {"device": "cuda" if use_gpu else "cpu", "output": None}
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
                  run_name: Optional[str] = None, storage: Optional[str] = None) -> "TorchTrainer":
    """A TorchTrainer for one distillation; `run_name` / `storage` override the ScaleConfig's.

    `callbacks` are Ray Train `UserCallback`s (e.g. Tune's `TuneReportCallback()`); they run in
    the Train controller. Call `.fit()` on the result (or use `train_on_ray`).
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if scale.workers < 1:
        raise UserError("Ray Train needs --workers >= 1 (0 runs in this process)")
    worker_cfg = _worker_config(cfg, scale)
    use_gpu = scale.gpus_per_worker > 0
    storage = resolve_storage(storage or scale.storage)
    run_name = run_name or scale.run_name or default_run_name(cfg)
    crash = os.environ.get(CRASH_ENV, "").strip()
    resources = {"CPU": scale.cpus_per_worker, **({"GPU": scale.gpus_per_worker} if use_gpu else {})}
    train_config = {
        "distill": worker_cfg.model_dump(mode="json"),
        "storage": storage, "run_name": run_name, "use_gpu": use_gpu,
        # Ray sets OMP_NUM_THREADS from the CPU reservation; set torch's threads to match explicitly.
        "threads": None if use_gpu else max(1, math.floor(scale.cpus_per_worker)),
        "sync_batchnorm": scale.sync_batchnorm,
        "crash_at_step": int(crash) if crash else None,
    }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=train_config,
        torch_config=TorchConfig(),  # backend None: nccl with GPUs, gloo on CPU
        scaling_config=ScalingConfig(num_workers=scale.workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name, storage_path=storage,
            failure_config=FailureConfig(max_failures=scale.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),  # the latest (resume point) and one before
            callbacks=list(callbacks) or None,
            logging_config=LoggingConfig(log_level="WARNING"),  # no per-report INFO lines
        ),
    )


class RayTrainRunError(UserError):
    """A Ray Train run failed (after its allowed restarts): one line, no traceback."""


def _root_cause(exc: BaseException) -> BaseException:
    failures = getattr(exc, "worker_failures", None)
    if failures:
        exc = failures[min(failures)]
    exc = getattr(exc, "controller_failure", exc)
    cause = getattr(exc, "cause", None)  # RayTaskError-style wrappers
    return cause if isinstance(cause, BaseException) else exc


def init_ray(num_cpus: Optional[int] = None, include_dashboard: bool = True, address: Optional[str] = None) -> bool:
    """Join `address` / `$RAY_ADDRESS` (checked within seconds), else start a local instance on
    127.0.0.1. True if started here.

    The local instance has all of this machine's CPUs (or `num_cpus`). Its dashboard (on
    127.0.0.1) costs about 2 s at start but serves the state API that Ray Train's placement-group
    cleaner polls; without it that cleaner logs a warning every second.
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return connect_ray(address, num_cpus=num_cpus, include_dashboard=include_dashboard, log_to_driver=True)


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
    from ray.train import TrainingFailedError

    _worker_config(cfg, scale)  # option errors before starting Ray
    init_ray(address=scale.address)
    trainer = build_trainer(cfg, scale, callbacks=callbacks)
    name = trainer.run_config.name
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        cause = _root_cause(exc)
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


# ---------------------------------------------------------------- report history

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


def _define_callbacks() -> None:
    """Ray Train callbacks subclass ray's UserCallback: defined on first use, so importing this
    module does not import ray (PEP 562 `__getattr__` below)."""
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

    for cls in (ReportLog, ProgressPrinter):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
        globals()[cls.__name__] = cls


def __getattr__(name: str) -> Any:
    if name in ("ReportLog", "ProgressPrinter"):
        _define_callbacks()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ScaleConfig", "build_trainer", "train_on_ray", "train_loop_per_worker", "init_ray", "dedupe_reports",
           "read_report_log", "result_from_metrics", "resolve_storage", "default_run_name", "ReportLog",
           "ProgressPrinter", "RayTrainRunError", "CRASH_ENV"]
