"""One Ray Train worker: the engine on one rank, its checkpoints and its outputs.

What is wrapped
    DDP wraps the generator and the student only; the frozen teacher is never wrapped (DDP
    refuses modules without trainable parameters). gloo on CPU, nccl on GPU (TorchConfig's
    default backend). SyncBatchNorm (`sync_batchnorm`) is applied on GPU only.

Checkpoints, resume and failures
    Every `checkpoint_every` steps (a DistillConfig option) rank 0 writes the engine state as
    `engine.pt` (torch.save of tensors and plain values only; loaded back with
    `torch.load(weights_only=True)`) plus `history.json` (the reports so far) into a temporary
    folder and reports it; the other ranks report `checkpoint=None`. The engine's per-rank state
    (`rdskd_dist.engine.gather_rank_state`: RNGs, the method's state, BN statistics) travels in
    `engine.pt`, so a resumed run continues bit-identically on every rank. On a (re)start each
    worker restores from `ray.train.get_checkpoint()`: after a worker failure
    (`FailureConfig(max_failures)`), and when a run is started again with the same `run_name` and
    `storage`. Reports made after the last checkpoint by a failed attempt are made again by the
    next one: `dedupe_reports` drops the superseded ones (the checkpoint's `history.json` never
    contains them).

Outputs
    At the end every rank evaluates its shard of the test split (all-reduced by the engine),
    rank 0 writes `student.pt`, `generator.pt`, `result.json`, `history.json` and the final metrics
    (`final_metrics.json`) into the final checkpoint and copies `student.pt` and `result.json` into
    the run folder `<storage>/<run_name>/` (rdskd_dist/files.py: any pyarrow URI works), and every
    rank makes a last `ray.train.report({**result, "done": 1}, checkpoint=...)`: `Result.metrics` of
    the fit holds `student_accuracy`, `teacher_accuracy`, ... (Ray Train V2 keeps the metrics of
    reports that carry a checkpoint).

    The final checkpoint carries no engine state: nothing is left to resume, and the engine state
    (optimisers, memory bank, pool) is two orders of magnitude larger than the outputs. The driver
    keeps one checkpoint (`num_to_keep=1`), so a finished run keeps its outputs only (a sweep of
    hundreds of trials would otherwise keep a resume point per trial). Started again with the same
    `run_name`, a finished run reports its final metrics again without building an engine.

Fault injection for tests: `RDSKD_CRASH_AT_STEP=k` in the driver's environment makes rank 1
(rank 0 with one worker) `os._exit(1)` at the first report at or after iteration k (before making
it), once per run: a marker file `.crash-injected` in the run folder keeps it from firing again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import Checkpoint

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec, load_split
from rdskd_dist.engine import (Distiller, finish, flat_health, gather_rank_state, load_rank_state, note_teacher,
                               prepare_teacher, share_rank0_student_buffers, write_outputs)
from rdskd_dist.files import (atomic_write_json, join, open_filesystem, path_kind, put_bytes, put_file, read_json,
                              safe_torch_load)

CRASH_ENV = "RDSKD_CRASH_AT_STEP"
CRASH_MARKER = ".crash-injected"
ENGINE_FILE, HISTORY_FILE, FINAL_FILE = "engine.pt", "history.json", "final_metrics.json"
OUTPUT_FILES = ("student.pt", "result.json")
ReportFn = Callable[[dict[str, float], Optional[dict[str, Any]]], None]


# ---------------------------------------------------------------- the run folder

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


# ---------------------------------------------------------------- the worker

def _worker_device(use_gpu: bool) -> torch.device:
    if not use_gpu:
        return torch.device("cpu")
    device = ray.train.torch.get_device()
    return device[0] if isinstance(device, list) else device


def _make_wrap(device: torch.device, world_size: int, sync_batchnorm: bool) -> Callable[[torch.nn.Module], torch.nn.Module]:
    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if sync_batchnorm and device.type == "cuda" and world_size > 1:
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        # DDP only when world_size > 1; the engine has already put the module on its device.
        return ray.train.torch.prepare_model(module, move_to_device=False)

    return wrap


def _load_test_split(cfg: DistillConfig, rank: int, world_size: int):
    if cfg.download and world_size > 1 and dist.is_initialized():  # one rank downloads, the others wait
        if rank == 0:
            load_split(cfg.dataset, "test", cfg.data_root, download=True)
        dist.barrier()
    return load_split(cfg.dataset, "test", cfg.data_root, download=cfg.download)


def _report_again_if_finished(checkpoint: Optional[Checkpoint], rank: int) -> bool:
    """A run restarted after its final checkpoint: report the final metrics again, True; else False."""
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        final_path = Path(folder) / FINAL_FILE
        if not final_path.is_file():
            return False
        final_metrics = read_json(final_path)
        if rank != 0:
            ray.train.report(final_metrics, checkpoint=None)
            return True
        with tempfile.TemporaryDirectory(prefix="rdskd-final-") as tmp:
            # a copy: `folder` may be the stored checkpoint itself, which Ray deletes once this one is kept
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            ray.train.report(final_metrics, checkpoint=Checkpoint.from_directory(tmp))
    return True


def _restore(engine: Distiller, checkpoint: Optional[Checkpoint]) -> list[dict[str, Any]]:
    """Load Ray's latest checkpoint of this run, if any; the reports made up to it."""
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as folder:
        load_rank_state(engine, safe_torch_load(Path(folder) / ENGINE_FILE, "checkpoint"))
        history_path = Path(folder) / HISTORY_FILE
        return read_json(history_path) if history_path.is_file() else []


def _reporter(engine: Distiller, history: list[dict[str, Any]], config: dict[str, Any]) -> ReportFn:
    """The engine's report callback: `ray.train.report` on every rank, rank 0 with the checkpoint."""
    rank, world_size = engine.rank, engine.world_size
    crash_at = config.get("crash_at_step")
    crash_rank = 1 if world_size > 1 else 0

    def report(metrics: dict[str, float], state: Optional[dict[str, Any]]) -> None:
        if (crash_at and rank == crash_rank and metrics["iteration"] >= crash_at
                and _claim_marker(config["storage"], config["run_name"])):
            # Die hard, as a killed process or a lost node would, mid-interval: after one controller
            # poll, so that the reports made so far have reached the controller and its callbacks.
            time.sleep(1.5 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)) + 0.5)
            os._exit(1)
        history.append(metrics)
        if state is None:
            ray.train.report(metrics)  # a barrier: every rank reports every time
            return
        state = gather_rank_state(engine, state)  # collective, on every rank
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="rdskd-ckpt-") as folder:
            torch.save(state, Path(folder) / ENGINE_FILE)
            atomic_write_json(history, Path(folder) / HISTORY_FILE)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    return report


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: build the engine, restore, train, evaluate, write outputs.

    `config` holds `distill` (a DistillConfig as JSON), `storage`, `run_name`, `use_gpu`,
    `threads`, `sync_batchnorm` and `crash_at_step` (see `driver.build_trainer`).
    """
    wall_start = time.perf_counter()
    started_at = time.time()  # epoch seconds: the trial turns these into its startup/setup/train/eval split
    cfg = DistillConfig.model_validate(config["distill"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = _worker_device(config["use_gpu"])
    checkpoint = ray.train.get_checkpoint()  # fetched once: a finished run ends here, another resumes from it
    if _report_again_if_finished(checkpoint, rank):
        return

    spec = get_spec(cfg.dataset)
    test_data = _load_test_split(cfg, rank, world_size)
    teacher, teacher_meta = prepare_teacher(cfg)
    engine = Distiller(cfg, teacher, spec, device, rank=rank, world_size=world_size,
                       wrap=_make_wrap(device, world_size, config.get("sync_batchnorm", False)))
    if rank == 0:
        note_teacher(teacher)
    history = _restore(engine, checkpoint)

    setup_at, setup_cpu = time.time(), time.process_time()
    engine.run(_reporter(engine, history, config))
    trained_at, train_cpu = time.time(), time.process_time() - setup_cpu

    share_rank0_student_buffers(engine)
    result = finish(engine, teacher_meta, test_data, wall_start)
    # health as scalar `health/...` metrics (its class histogram travels in result.json)
    final_metrics = {**{k: v for k, v in result.to_dict().items() if k != "health"}, **flat_health(result.health),
                     # when this worker entered the loop, finished its setup (data, teacher, engine, restore),
                     # training and evaluation (time.time(), this worker's clock)
                     "timing_worker_start_at": started_at, "timing_setup_done_at": setup_at,
                     "timing_train_done_at": trained_at, "timing_eval_done_at": time.time(),
                     # CPU seconds of this process while training (all its threads): / train wall = CPU share
                     "timing_train_cpu_s": train_cpu, "done": 1}
    if rank != 0:
        ray.train.report(final_metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="rdskd-final-") as tmp:
        folder = Path(tmp)
        write_outputs(folder, engine, result, teacher_meta)  # student.pt, generator.pt, result.json
        atomic_write_json(history, folder / HISTORY_FILE)
        atomic_write_json(final_metrics, folder / FINAL_FILE)  # the same run name reports these again
        _put_files(folder, OUTPUT_FILES, config["storage"], config["run_name"])
        ray.train.report(final_metrics, checkpoint=Checkpoint.from_directory(tmp))


__all__ = ["train_loop_per_worker", "CRASH_ENV", "CRASH_MARKER", "ENGINE_FILE", "FINAL_FILE", "HISTORY_FILE",
           "OUTPUT_FILES"]
