"""DFAD (Fang et al., 2019): the generator maximises the student-teacher L1 discrepancy."""

from __future__ import annotations

from typing import Callable

import torch

from rdskd_dist.methods.base import Method, Terms
from rdskd_dist.methods.losses import l1_logit_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


@register_method
class DFAD(Method):
    name = "dfad"
    schedule = "adversarial"
    lr_student = 0.01  # DFAD's MNIST setting (SGD on CIFAR uses 0.1)

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        discrepancy = l1_logit_loss(student(x), teacher_out.logits)
        return self.add_bn_term({"total": -discrepancy, "adv": discrepancy})

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        return {"total": l1_logit_loss(student(x), teacher_out.logits)}
