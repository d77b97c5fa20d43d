"""The distillation loop (plain PyTorch) and its in-process runner."""

from rdskd_dist.engine.evaluate import evaluate_accuracy
from rdskd_dist.engine.loop import DistillResult, Distiller, schedule_steps, unwrap
from rdskd_dist.engine.resolve import describe_sources, resolve_config
from rdskd_dist.engine.run import prepare_teacher, resolve_device, run_distillation, save_student

__all__ = ["DistillResult", "Distiller", "describe_sources", "evaluate_accuracy", "prepare_teacher", "resolve_config",
           "resolve_device", "run_distillation", "save_student", "schedule_steps", "unwrap"]
