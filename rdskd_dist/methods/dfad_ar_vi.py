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
from rdskd_dist.methods.connectors import FeatureTarget, build_connector
from rdskd_dist.methods.dfad import DFAD
from rdskd_dist.methods.losses import activation_boundary_loss, l1_logit_loss
from rdskd_dist.methods.mixing import mix_pairs
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


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
        if cfg.w_hint > 0:
            raise UserError("dfad_ar_vi compares student and teacher features with its own activation regulariser "
                            "(--ar-weight); --w-hint is for the other methods: set --w-hint 0")
        super().__init__(cfg, teacher, student, noise)
        self.connector: nn.Module | None = None
        self._target: FeatureTarget = lambda t: t
        if self.options.ar_weight > 0:
            self.connector, self._target = build_connector(cfg.dataset, teacher, student,
                                                           "dfad_ar_vi's activation regulariser", "--ar-weight 0")

    def student_modules(self) -> nn.Module | None:
        return self.connector

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        cfg = self.options
        out = student(x, features=self.connector is not None)
        s_logits = out.logits if self.connector is not None else out
        terms = {"l1": l1_logit_loss(s_logits, teacher_out.logits)}
        total = terms["l1"]
        if self.connector is not None:
            terms["ar"] = activation_boundary_loss(self.connector(out.preact), self._target(teacher_out.preact),
                                                   cfg.ar_margin)
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
