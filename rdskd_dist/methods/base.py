"""The one small interface every distillation method implements."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn

from rdskd_dist.config import DistillConfig
from rdskd_dist.errors import UserError
from rdskd_dist.methods.losses import BNStatsLoss
from rdskd_dist.models.base import Features

Terms = dict[str, torch.Tensor]  # named loss terms; "total" is what gets back-propagated


class Method:
    """A method turns teacher outputs on generated samples into generator and student losses.

    The engine owns the networks, optimisers and schedule; a method only computes losses
    (and keeps whatever state its losses need, such as RDSKD's penalty references).
    """

    name: ClassVar[str]
    schedule: ClassVar[str]  # default schedule: two_stage, joint or adversarial
    temperature: ClassVar[float] = 1.0
    student_optimizer: ClassVar[str] = "adam"
    lr_student: ClassVar[float] = 2e-3
    teacher_features_for_student: ClassVar[bool] = False

    @classmethod
    def default_weights(cls, dataset: str) -> dict[str, float]:
        """Reference loss weights (w_oh, w_ie, w_ds, w_a) for a dataset."""
        return {"w_oh": 0.0, "w_ie": 0.0, "w_ds": 0.0, "w_a": 0.0}

    def __init__(self, cfg: DistillConfig, teacher: nn.Module, student: nn.Module,
                 noise: torch.Generator | None = None):
        """`noise` is the engine's random generator: draw any randomness from it so resume is exact."""
        self.cfg = cfg
        self.teacher = teacher
        self.noise = noise
        self.bn_stats: BNStatsLoss | None = None
        if cfg.w_bn > 0:
            layers = getattr(teacher, "bn_layers", lambda: [])()
            if not layers:
                raise UserError("w_bn > 0 needs a teacher with BatchNorm layers; this teacher has none")
            self.bn_stats = BNStatsLoss(layers)

    def teacher_forward(self, x: torch.Tensor, for_generator: bool) -> Features:
        """The teacher's outputs on x; in a generator step this also records BN statistics."""
        if for_generator and self.bn_stats is not None:
            self.bn_stats.start()
        return self.teacher(x, features=True)

    def student_modules(self) -> nn.Module | None:
        """Extra trainable modules optimised with the student (e.g. connector layers)."""
        return None

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        raise NotImplementedError

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        raise NotImplementedError

    def add_bn_term(self, terms: Terms) -> Terms:
        """Adds the BN-statistics term recorded during the teacher's forward pass, if enabled."""
        if self.bn_stats is not None:
            terms["bn"] = self.bn_stats.collect()
            terms["total"] = terms["total"] + self.cfg.w_bn * terms["bn"]
        return terms

    def state_dict(self) -> dict[str, Any]:
        modules = self.student_modules()
        return {"modules": modules.state_dict()} if modules is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        modules = self.student_modules()
        if modules is not None:
            modules.load_state_dict(state["modules"])
