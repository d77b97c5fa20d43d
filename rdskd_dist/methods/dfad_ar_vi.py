"""DFAD + activation regularisation + virtual interpolation (Qu et al., ICASSP 2021).

No public code exists; both additions follow the forms in the method reference and are
configurable: the activation-boundary loss on the late pre-activation features (through a
connector where the student is narrower), and mixup-style interpolation of generated samples.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn as nn
from pydantic import Field, NonNegativeFloat, PositiveFloat

from rdskd_dist.errors import UserError
from rdskd_dist.methods.base import MethodOptions, Terms
from rdskd_dist.methods.dfad import DFAD
from rdskd_dist.methods.losses import activation_boundary_loss, l1_logit_loss
from rdskd_dist.methods.mixing import mix_pairs
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


def _connector(student_width: int, teacher_width: int, spatial: bool) -> nn.Module:
    """Maps the student's pre-activations to the teacher's width (identity when equal)."""
    if student_width == teacher_width:
        return nn.Identity()
    if spatial:
        return nn.Sequential(nn.Conv2d(student_width, teacher_width, 1, bias=False), nn.BatchNorm2d(teacher_width))
    return nn.Linear(student_width, teacher_width)


class DFADARVIOptions(MethodOptions):
    ar_weight: NonNegativeFloat = Field(1.0, description="DFAD+AR+VI: activation-boundary regulariser weight (beta)")
    ar_margin: PositiveFloat = Field(1.0, description="DFAD+AR+VI: activation-boundary margin (mu)")
    vi_weight: NonNegativeFloat = Field(1.0, description="DFAD+AR+VI: weight of the virtual-interpolation loss")
    vi_alpha: PositiveFloat = Field(1.0, description="DFAD+AR+VI: Beta(alpha, alpha) of the mixing coefficient")
    vi_target: Literal["teacher", "mix"] = Field(
        "teacher", description="DFAD+AR+VI: teacher on the mix, or mix of teacher outputs")


@register_method
class DFADARVI(DFAD):
    """DFAD's training (its reference settings are inherited) plus the two student-side terms."""

    name = "dfad_ar_vi"
    Options = DFADARVIOptions
    reference_source = DFAD.reference_source + " (no public code for AR and VI)"
    sweepable = {"ar_weight": False, "ar_margin": False, "vi_weight": False, "vi_alpha": False}
    teacher_features_for_student = True

    def __init__(self, cfg, teacher: nn.Module, student: nn.Module, noise: torch.Generator | None = None):
        super().__init__(cfg, teacher, student, noise)
        self.connector: nn.Module | None = None
        if self.options.ar_weight > 0:
            s_w, t_w = getattr(student, "preact_channels", None), getattr(teacher, "preact_channels", None)
            if s_w is None or t_w is None:
                raise UserError("dfad_ar_vi's activation regulariser needs teacher and student built by create_model")
            self.connector = _connector(s_w, t_w, spatial=student.preact_spatial)

    def student_modules(self) -> nn.Module | None:
        return self.connector

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        cfg = self.options
        out = student(x, features=self.connector is not None)
        s_logits = out.logits if self.connector is not None else out
        terms = {"l1": l1_logit_loss(s_logits, teacher_out.logits)}
        total = terms["l1"]
        if self.connector is not None:
            terms["ar"] = activation_boundary_loss(self.connector(out.preact), teacher_out.preact, cfg.ar_margin)
            total = total + cfg.ar_weight * terms["ar"]
        if cfg.vi_weight > 0:
            mixed, lam, perm = mix_pairs(x, cfg.vi_alpha, self.noise)
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
