"""The distillation loop (plain PyTorch) and its in-process runner.

What is exported here is the engine's public face: the in-process runner and the pieces an adapter
(Ray Train, ...) needs to run the same engine on several ranks.
"""

from rdskd_dist.engine.evaluate import evaluate_accuracy
from rdskd_dist.engine.health import flat_health, health_from_flat
from rdskd_dist.engine.loop import DistillResult, Distiller, schedule_steps, unwrap
from rdskd_dist.engine.rank_state import gather_rank_state, load_rank_state, share_rank0_student_buffers
from rdskd_dist.engine.resolve import describe_sources, resolve_config
from rdskd_dist.engine.run import (finish, note_teacher, prepare_teacher, resolve_device, run_distillation,
                                   save_student, write_outputs)
from rdskd_dist.engine.seeds import joining_rank_noise_seed, noise_seed, pool_seed

__all__ = ["DistillResult", "Distiller", "describe_sources", "evaluate_accuracy", "finish", "flat_health",
           "gather_rank_state", "health_from_flat", "joining_rank_noise_seed", "load_rank_state", "noise_seed",
           "note_teacher", "pool_seed", "prepare_teacher", "resolve_config", "resolve_device", "run_distillation",
           "save_student", "schedule_steps", "share_rank0_student_buffers", "unwrap", "write_outputs"]
