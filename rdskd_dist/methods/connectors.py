"""Connectors from a student's late feature to a teacher's, for student terms that compare the two
(DFAD+AR+VI's activation regulariser, the feature hint any other method can add)."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from rdskd_dist.data import get_spec
from rdskd_dist.errors import UserError
from rdskd_dist.models.base import LogitsOnly, feature_layer_candidates

FeatureTarget = Callable[[torch.Tensor], torch.Tensor]


def _connector(student_width: int, teacher_width: int, spatial: bool) -> nn.Module:
    """Maps the student's pre-activations to the teacher's width (identity when equal)."""
    if student_width == teacher_width:
        return nn.Identity()
    if spatial:
        return nn.Sequential(nn.Conv2d(student_width, teacher_width, 1, bias=False), nn.BatchNorm2d(teacher_width))
    return nn.Linear(student_width, teacher_width)


def _teacher_target(teacher_shape: tuple[int, ...], student_spatial: bool) -> FeatureTarget:
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


def build_connector(dataset: str, teacher: nn.Module, student: nn.Module, term: str,
                    off_switch: str) -> tuple[nn.Module, FeatureTarget]:
    """The connector from the student's `preact` feature to the teacher's, and how the teacher's feature is
    shaped to compare with its output. `term` and `off_switch` name the term and the option that turns it off in
    the one-line errors (a student outside the zoo, a teacher without a feature)."""
    if isinstance(teacher, LogitsOnly):  # any nn.Module teacher: its feature's shape from one dummy forward
        spec = get_spec(dataset)
        teacher.probe(spec.channels, spec.image_size)
    student_width = getattr(student, "preact_channels", None)
    if student_width is None:
        raise UserError(f"{term} needs a student built by create_model")
    teacher_shape = getattr(teacher, "preact_shape", None)
    if teacher_shape is not None:
        return (_shaped_connector(student_width, student.preact_spatial, teacher_shape),
                _teacher_target(teacher_shape, student.preact_spatial))
    if getattr(teacher, "preact_channels", None) is not None:  # a zoo teacher
        return _connector(student_width, teacher.preact_channels, spatial=student.preact_spatial), (lambda t: t)
    names = feature_layer_candidates(getattr(teacher, "module", teacher))
    raise UserError(f"{term} needs a teacher feature: this teacher calls no nn.Linear to take the penultimate "
                    f"feature from; name a layer with --teacher-feature-layer (candidates: "
                    f"{', '.join(names) or 'none'}) or set {off_switch}")
