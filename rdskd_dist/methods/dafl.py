"""DAFL (Chen et al., ICCV 2019): one-hot, activation and information-entropy generator losses, joint KD.

Reference code: huawei-noah/Efficient-Computing, Data-Efficient-Model-Compression/DAFL/DAFL-train.py.
Every iteration makes one batch, updates the generator on it and the student on the same
(detached) batch; the generator is never put in eval mode.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field

from rdskd_dist.methods.base import Method, MethodOptions, Terms
from rdskd_dist.methods.losses import info_entropy_loss, kd_kl_loss, onehot_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


class DAFLOptions(MethodOptions):
    entropy_log: Literal["log10", "ln"] = Field(
        "log10", description="DAFL: logarithm of the information-entropy term (the reference code uses log10)")
    activation_feature: Literal["trunk", "penultimate"] = Field(
        "trunk", description="DAFL: teacher feature of the activation term: trunk = the flattened conv trunk output "
                             "(LeNet-5: relu(conv3), 120-d, the reference's `feature`; ResNet/WRN: the pooled "
                             "feature), penultimate = the input of the last linear layer")


# DAFL's CIFAR student: SGD 0.1, momentum 0.9, wd 5e-4, lr x0.1 at epoch 800 and x0.01 from 1600 of 2000.
_CIFAR_STUDENT = dict(student_optimizer="sgd", lr_student=0.1, momentum=0.9, weight_decay=5e-4,
                      lr_decay_at=[0.4, 0.8], lr_generator=0.02)


@register_method
class DAFL(Method):
    name = "dafl"
    Options = DAFLOptions
    reference_source = "huawei-noah/Efficient-Computing DAFL/DAFL-train.py and README"
    references = {
        # MNIST: generator Adam 0.2 (sic), student Adam 2e-3, no schedule; KD at T = 1.
        "*": dict(schedule="joint", w_oh=1.0, w_ie=5.0, w_ds=0.0, w_a=0.1, temperature=1.0,
                  lr_generator=0.2, student_optimizer="adam", lr_student=2e-3, weight_decay=0.0,
                  lr_decay_at=[], generator_lr_decay_at=[], generator_inner_bn_eps=0.8),
        "cifar10": dict(w_oh=0.05, w_ie=5.0, w_a=0.01, **_CIFAR_STUDENT),
        "cifar100": dict(w_oh=0.5, w_ie=20.0, w_a=0.1, **_CIFAR_STUDENT),
    }

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        cfg, opts = self.cfg, self.options
        logits = teacher_out.logits
        oh = onehot_loss(logits, cfg.onehot_targets == "balanced")
        ie = info_entropy_loss(logits, base=10.0 if opts.entropy_log == "log10" else None)
        terms = {"oh": oh, "ie": ie}
        total = cfg.w_oh * oh + cfg.w_ie * ie
        if cfg.w_a > 0:
            terms["a"] = self.activation_term(teacher_out, opts.activation_feature)
            total = total + cfg.w_a * terms["a"]
        terms["total"] = total
        return self.add_prior_terms(terms, x)

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        logits, out = self.student_outputs(x, student)
        return self.add_hint_term({"total": kd_kl_loss(logits, teacher_out.logits, self.cfg.temperature)}, out,
                                  teacher_out)
