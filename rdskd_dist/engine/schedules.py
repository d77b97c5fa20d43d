"""Budgets and learning-rate schedules of a resolved config."""

from __future__ import annotations

import math
from typing import Callable

import torch

from rdskd_dist.config import DistillConfig
from rdskd_dist.errors import UserError


def schedule_steps(cfg: DistillConfig) -> tuple[int, int, int]:
    """(loop iterations, generator steps, student steps) of a resolved config."""
    if cfg.adversarial_every and cfg.schedule != "two_stage":
        raise UserError(f"adversarial_every needs the two_stage schedule; {cfg.method} runs {cfg.schedule!r}")
    if cfg.schedule == "two_stage":
        extra = cfg.student_steps // cfg.adversarial_every if cfg.adversarial_every else 0
        return cfg.generator_steps + cfg.student_steps, cfg.generator_steps + extra, cfg.student_steps
    if cfg.schedule == "joint":
        return cfg.student_steps, cfg.student_steps, cfg.student_steps
    n = cfg.student_steps_per_generator_step
    if cfg.student_steps % n:
        raise UserError(f"adversarial schedule: student_steps ({cfg.student_steps}) must be a multiple of "
                        f"student_steps_per_generator_step ({n})")
    return cfg.student_steps // n, cfg.student_steps // n, cfg.student_steps


def _step_decay(total_steps: int, fractions: list[float], gamma: float) -> Callable[[int], float]:
    milestones = sorted(math.floor(f * total_steps) for f in fractions)
    return lambda step: gamma ** sum(step >= m for m in milestones)


def student_schedule(opt: torch.optim.Optimizer, cfg: DistillConfig, steps: int):
    if cfg.student_lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr_student, total_steps=max(steps, 2),
                                                   pct_start=0.15)
    if cfg.student_lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, _step_decay(steps, cfg.lr_decay_at, cfg.lr_decay))


def generator_schedule(opt: torch.optim.Optimizer, cfg: DistillConfig, steps: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, _step_decay(steps, cfg.generator_lr_decay_at, cfg.lr_decay))
