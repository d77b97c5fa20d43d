"""DFAD + activation regularisation + virtual interpolation (Qu et al., ICASSP 2021).

No public code exists; both additions follow the forms in the method reference and are
configurable: the activation-boundary loss on the late pre-activation features (through a
connector where the student is narrower), and mixup-style interpolation of generated samples.
"""

from __future__ import annotations

import math
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
from rdskd_dist.data import get_spec
from rdskd_dist.models.base import Features, LogitsOnly, feature_layer_candidates


def _connector(student_width: int, teacher_width: int, spatial: bool) -> nn.Module:
    """Maps the student's pre-activations to the teacher's width (identity when equal)."""
    if student_width == teacher_width:
        return nn.Identity()
    if spatial:
        return nn.Sequential(nn.Conv2d(student_width, teacher_width, 1, bias=False), nn.BatchNorm2d(teacher_width))
    return nn.Linear(student_width, teacher_width)


def _teacher_target(teacher_shape: tuple[int, ...], student_spatial: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """How the teacher's feature is compared with the connector's output: a feature map against a student
    vector is average-pooled over space; any other non-map feature is flattened."""
    if len(teacher_shape) == 3:
        return (lambda t: t) if student_spatial else (lambda t: t.mean(dim=(2, 3)))
    return lambda t: t.flatten(1)


def _shaped_connector(student_width: int, student_spatial: bool, teacher_shape: tuple[int, ...]) -> nn.Module:
    """A connector from the student's pre-activations to a teacher feature of any shape (known from a probe)."""
    if len(teacher_shape) == 3 and student_spatial:  # maps to maps: 1x1 conv, then the teacher's spatial size
        return nn.Sequential(_connector(student_width, teacher_shape[0], spatial=True),
                             nn.AdaptiveAvgPool2d(tuple(teacher_shape[1:])))
    width = teacher_shape[0] if len(teacher_shape) == 3 else math.prod(teacher_shape)
    if student_spatial:  # a student map against a teacher vector: pool the student's first
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), _connector(student_width, width, spatial=False))
    return _connector(student_width, width, spatial=False)


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
        self._target: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
        if self.options.ar_weight > 0:
            if isinstance(teacher, LogitsOnly):  # any nn.Module teacher: its feature's shape from one dummy forward
                spec = get_spec(cfg.dataset)
                teacher.probe(spec.channels, spec.image_size)
            s_w = getattr(student, "preact_channels", None)
            if s_w is None:
                raise UserError("dfad_ar_vi's activation regulariser needs a student built by create_model")
            teacher_shape = getattr(teacher, "preact_shape", None)
            if teacher_shape is not None:
                self.connector = _shaped_connector(s_w, student.preact_spatial, teacher_shape)
                self._target = _teacher_target(teacher_shape, student.preact_spatial)
            elif getattr(teacher, "preact_channels", None) is not None:  # a zoo teacher
                self.connector = _connector(s_w, teacher.preact_channels, spatial=student.preact_spatial)
            else:
                names = feature_layer_candidates(getattr(teacher, "module", teacher))
                raise UserError("dfad_ar_vi's activation regulariser needs a teacher feature: this teacher calls no "
                                "nn.Linear to take the penultimate feature from; name a layer with "
                                f"--teacher-feature-layer (candidates: {', '.join(names) or 'none'}) or set "
                                "--ar-weight 0")

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
