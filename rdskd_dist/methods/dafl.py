"""DAFL (Chen et al., ICCV 2019): one-hot, activation and information-entropy terms, joint training."""

from __future__ import annotations

from typing import Callable

import torch

from rdskd_dist.errors import UserError
from rdskd_dist.methods.base import Method, Terms
from rdskd_dist.methods.losses import activation_loss, info_entropy_loss, kd_kl_loss, onehot_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features

# Reference (one-hot, information entropy, activation) weights per dataset from the DAFL paper.
_REFERENCE_WEIGHTS = {"cifar10": (0.05, 5.0, 0.01), "cifar100": (0.5, 20.0, 0.1)}
_MNIST_WEIGHTS = (1.0, 5.0, 0.1)


@register_method
class DAFL(Method):
    name = "dafl"
    schedule = "joint"
    temperature = 1.0
    lr_student = 2e-3

    @classmethod
    def default_weights(cls, dataset: str) -> dict[str, float]:
        oh, ie, a = _REFERENCE_WEIGHTS.get(dataset, _MNIST_WEIGHTS)
        return {"w_oh": oh, "w_ie": ie, "w_ds": 0.0, "w_a": a}

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        cfg = self.cfg
        logits = teacher_out.logits
        oh, ie = onehot_loss(logits), info_entropy_loss(logits)
        terms = {"oh": oh, "ie": ie}
        total = cfg.w_oh * oh + cfg.w_ie * ie
        if cfg.w_a > 0:
            if teacher_out.penultimate is None:
                raise UserError("DAFL's activation term (w_a > 0) needs a teacher that exposes penultimate features")
            terms["a"] = activation_loss(teacher_out.penultimate)
            total = total + cfg.w_a * terms["a"]
        terms["total"] = total
        return self.add_bn_term(terms)

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        return {"total": kd_kl_loss(student(x), teacher_out.logits, self.cfg.temperature)}
