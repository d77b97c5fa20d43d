"""DFAD + activation regularisation + virtual interpolation (Qu et al., ICASSP 2021).

No public code exists; both additions follow the forms in the method reference and are
configurable: the activation-boundary loss on the late pre-activation features (through a
connector where the student is narrower), and mixup-style interpolation of generated samples.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from rdskd_dist.config import DistillConfig
from rdskd_dist.errors import UserError
from rdskd_dist.methods.base import Terms
from rdskd_dist.methods.dfad import DFAD
from rdskd_dist.methods.losses import activation_boundary_loss, l1_logit_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


def _connector(student_width: int, teacher_width: int, spatial: bool) -> nn.Module:
    """Maps the student's pre-activations to the teacher's width (identity when equal)."""
    if student_width == teacher_width:
        return nn.Identity()
    if spatial:
        return nn.Sequential(nn.Conv2d(student_width, teacher_width, 1, bias=False), nn.BatchNorm2d(teacher_width))
    return nn.Linear(student_width, teacher_width)


@register_method
class DFADARVI(DFAD):
    name = "dfad_ar_vi"
    teacher_features_for_student = True

    def __init__(self, cfg: DistillConfig, teacher: nn.Module, student: nn.Module,
                 noise: torch.Generator | None = None):
        super().__init__(cfg, teacher, student, noise)
        self.connector: nn.Module | None = None
        if cfg.ar_weight > 0:
            s_w, t_w = getattr(student, "preact_channels", None), getattr(teacher, "preact_channels", None)
            if s_w is None or t_w is None:
                raise UserError("dfad_ar_vi's activation regulariser needs teacher and student built by create_model")
            self.connector = _connector(s_w, t_w, spatial=student.preact_spatial)

    def student_modules(self) -> nn.Module | None:
        return self.connector

    def _mix_coefficients(self, n: int, device: torch.device) -> torch.Tensor:
        # Beta(a, a) from two Gammas drawn with the engine's noise generator, so that resume is exact.
        a = torch.full((n,), self.cfg.vi_alpha, device=device)
        g1, g2 = torch._standard_gamma(a, generator=self.noise), torch._standard_gamma(a, generator=self.noise)
        return g1 / (g1 + g2)

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        cfg = self.cfg
        out = student(x, features=self.connector is not None)
        s_logits = out.logits if self.connector is not None else out
        terms = {"l1": l1_logit_loss(s_logits, teacher_out.logits)}
        total = terms["l1"]
        if self.connector is not None:
            terms["ar"] = activation_boundary_loss(self.connector(out.preact), teacher_out.preact, cfg.ar_margin)
            total = total + cfg.ar_weight * terms["ar"]
        if cfg.vi_weight > 0:
            n = x.shape[0]
            lam = self._mix_coefficients(n, x.device)
            perm = torch.randperm(n, device=x.device, generator=self.noise)
            lam_x = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
            mixed = lam_x * x + (1 - lam_x) * x[perm]
            if cfg.vi_target == "teacher":
                with torch.no_grad():
                    target = self.teacher(mixed)
            else:
                lam_y = lam.view(-1, 1)
                target = lam_y * teacher_out.logits + (1 - lam_y) * teacher_out.logits[perm]
            terms["vi"] = l1_logit_loss(student(mixed), target)
            total = total + cfg.vi_weight * terms["vi"]
        terms["total"] = total
        return terms
