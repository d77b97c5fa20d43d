"""One distillation in this process: load the teacher, run the engine, evaluate, write outputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import input_spec, load_split
from rdskd_dist.engine.evaluate import evaluate_accuracy
from rdskd_dist.engine.health import generation_health, warn_if_collapsed
from rdskd_dist.engine.loop import DistillResult, Distiller, ReportCallback, unwrap
from rdskd_dist.errors import UserError
from rdskd_dist.files import atomic_torch_save, atomic_write_json, safe_torch_load
from rdskd_dist.models import LogitsOnly, model_spec
from rdskd_dist.teachers import load_teacher, teacher_from_module


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} requested but CUDA is not available on this machine")
    return device


def prepare_teacher(cfg: DistillConfig, teacher: nn.Module | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The frozen teacher and its metadata, from `cfg.teacher` or a module passed from Python. Checked on the
    run's inputs (`--image-size`, `--teacher-mean`/`--teacher-std`: `input_spec`)."""
    spec = input_spec(cfg)
    if teacher is not None:
        return teacher_from_module(teacher, spec, cfg.teacher_feature_layer)
    if not cfg.teacher:
        raise UserError("no teacher given: pass --teacher PATH (train one with python -m rdskd_dist.teacher)")
    return load_teacher(cfg.teacher, spec, arch=cfg.teacher_arch, sha256=cfg.teacher_sha256,
                        feature_layer=cfg.teacher_feature_layer)


def note_teacher(teacher: nn.Module) -> None:
    """One note line on stderr at the start of training about what a teacher from outside the zoo (any
    nn.Module, torchvision:NAME, module:factory) cannot give the methods. Zoo teachers are known quantities
    (LeNet-5 has no BN by design) and stay quiet; w_bn > 0 with any BN-less teacher is refused anyway."""
    if isinstance(teacher, LogitsOnly) and not teacher.bn_layers():
        print("note: teacher has no BatchNorm layers: the BN-statistics term (w_bn) is unavailable",
              file=sys.stderr, flush=True)


def save_student(model: nn.Module, path: Path, extra: dict[str, Any]) -> None:
    """The student as a weights-only checkpoint: state_dict plus the spec that rebuilds its class."""
    module = unwrap(model)
    atomic_torch_save({"format": "rdskd-student/1", "arch": model_spec(module),
                       "state_dict": module.state_dict(), **extra}, path)


def finish(engine: Distiller, teacher_meta: dict[str, Any], test_data, wall_start: float) -> DistillResult:
    """Evaluate the student (and the teacher) on the test split at the end of the budget."""
    cfg = engine.cfg
    test_data = test_data.to_spec(engine.spec)  # a split loaded at the dataset's own size: resized once here
    kwargs = dict(batch_size=cfg.eval_batch_size, precision=cfg.precision, channels_last=cfg.channels_last,
                  rank=engine.rank, world_size=engine.world_size)
    student_acc = evaluate_accuracy(unwrap(engine.student), test_data, engine.device, **kwargs)
    teacher_acc = teacher_meta.get("test_accuracy")
    if cfg.eval_teacher:
        teacher_acc = evaluate_accuracy(engine.teacher, test_data, engine.device, **kwargs)
    # samples/s counts every sample a training step consumed, generator and student steps alike
    samples = (engine.g_step + engine.s_step) * cfg.batch_size * engine.world_size
    health = generation_health(engine)
    if engine.rank == 0:
        warn_if_collapsed(health)
    return DistillResult(
        method=cfg.method, dataset=cfg.dataset, student_arch=cfg.student, teacher_accuracy=teacher_acc,
        student_accuracy=student_acc, iterations=engine.iteration, generator_steps=engine.g_step,
        student_steps=engine.s_step, train_time_s=engine.train_time_s, wall_time_s=time.perf_counter() - wall_start,
        samples_per_s=samples / max(engine.train_time_s, 1e-9), world_size=engine.world_size,
        device=str(engine.device.type), precision=cfg.precision, health=health)


def run_distillation(cfg: DistillConfig, teacher: nn.Module | None = None,
                     on_report: ReportCallback | None = None) -> DistillResult:
    """Run one distillation in this process (the path that `--workers 0` takes)."""
    wall_start = time.perf_counter()
    spec = input_spec(cfg)
    test_data = load_split(cfg.dataset, "test", cfg.data_root, download=cfg.download, spec=spec)
    teacher_module, teacher_meta = prepare_teacher(cfg, teacher)
    device = resolve_device(cfg.device)
    engine = Distiller(cfg, teacher_module, spec, device)
    if cfg.checkpoint is not None and cfg.checkpoint.exists():
        engine.load_state_dict(safe_torch_load(cfg.checkpoint, "checkpoint"))
    note_teacher(engine.teacher)  # once the run is set up: a refused config stays a one-line error

    def report(metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        if checkpoint is not None and cfg.checkpoint is not None:
            atomic_torch_save(checkpoint, cfg.checkpoint)
        if on_report is not None:
            on_report(metrics, checkpoint)

    engine.run(report)
    result = finish(engine, teacher_meta, test_data, wall_start)
    if cfg.output is not None:
        write_outputs(cfg.output, engine, result, teacher_meta)
    return result


def write_outputs(out: Path, engine: Distiller, result: DistillResult, teacher_meta: dict[str, Any]) -> None:
    save_student(engine.student, out / "student.pt", {"dataset": engine.cfg.dataset,
                                                      "test_accuracy": result.student_accuracy})
    generator = unwrap(engine.generator)
    atomic_torch_save({"format": "rdskd-generator/1", "arch": model_spec(generator),
                       "state_dict": generator.state_dict()}, out / "generator.pt")
    atomic_write_json({**result.to_dict(), "config": engine.cfg.model_dump(mode="json"),
                       "teacher": {k: v for k, v in teacher_meta.items() if k != "path"}}, out / "result.json")


ProgressCallback = Callable[[dict[str, float], Any], None]
