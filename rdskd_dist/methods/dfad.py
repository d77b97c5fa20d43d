"""DFAD (Fang et al., 2019): the generator maximises the student-teacher L1 discrepancy.

Reference code: VainF/Data-Free-Adversarial-Distillation (DFAD_mnist.py, DFAD_cifar.py): five
student steps on fresh samples per generator step, the generator in train mode throughout.
"""

from __future__ import annotations

from typing import Callable

import torch

from rdskd_dist.methods.base import Method, Terms
from rdskd_dist.methods.losses import l1_logit_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features

# CIFAR: student SGD 0.1, wd 5e-4; both networks' lr x0.1 at epochs 100 and 200 of 500; latent 256.
_CIFAR = dict(lr_student=0.1, weight_decay=5e-4, lr_decay_at=[0.2, 0.4], generator_lr_decay_at=[0.2, 0.4],
              latent_dim=256)


@register_method
class DFAD(Method):
    name = "dfad"
    reference_source = "VainF/Data-Free-Adversarial-Distillation DFAD_mnist.py, DFAD_cifar.py"
    references = {
        # MNIST: student SGD 0.01, momentum 0.9, wd 1e-4; generator Adam 1e-3; no schedule; default BN eps.
        "*": dict(schedule="adversarial", student_steps_per_generator_step=5, w_oh=0.0, w_ie=0.0, w_ds=0.0,
                  w_a=0.0, temperature=1.0, lr_generator=1e-3, student_optimizer="sgd", lr_student=0.01,
                  momentum=0.9, weight_decay=1e-4, lr_decay_at=[], generator_lr_decay_at=[],
                  generator_inner_bn_eps=1e-5),
        "cifar10": _CIFAR,
        "cifar100": _CIFAR,
    }

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        discrepancy = l1_logit_loss(student(x), teacher_out.logits)
        return self.add_prior_terms({"total": -discrepancy, "adv": discrepancy}, x)

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        logits, out = self.student_outputs(x, student)
        return self.add_hint_term({"total": l1_logit_loss(logits, teacher_out.logits)}, out, teacher_out)
