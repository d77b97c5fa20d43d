"""RDSKD (Han et al., ICASSP 2021): authenticity, class and inter-sample diversity, exponential penalty."""

from __future__ import annotations

from typing import Any, Callable

import torch

from rdskd_dist.config import DistillConfig
from rdskd_dist.methods.base import Method, Terms
from rdskd_dist.methods.losses import inter_sample_diversity_loss, info_entropy_loss, kd_kl_loss, onehot_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


class ExponentialPenalty:
    """exp(L - r) per term, with detached references r that refresh on a schedule.

    The gradient of exp(L - r) is exp(L - r) * dL: a term that rises above its reference is
    pushed down exponentially harder, one below it is weighted less.
    - "epoch": r starts at 0 and is set to the current values at the second step of each
      epoch of `epoch` generator steps (the reference code's behaviour);
    - "step": r is the previous step's value (0 at the first step);
    - "ema": r is an exponential moving average of past values (the first value at step 0).
    """

    def __init__(self, refresh: str, epoch: int, ema: float):
        self.refresh, self.epoch, self.ema = refresh, epoch, ema
        self.reference: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None

    def __call__(self, values: torch.Tensor, step: int) -> torch.Tensor:
        current = values.detach()
        if self.reference is None:
            self.reference = torch.zeros_like(current)
        if self.refresh == "epoch":
            if step % self.epoch == (1 if self.epoch > 1 else 0):
                self.reference = current.clone()
        elif self.refresh == "step":
            if self._previous is not None:
                self.reference = self._previous
            self._previous = current.clone()
        elif step == 0:  # ema, first step
            self.reference = current.clone()
        scaled = torch.exp(values - self.reference)
        if self.refresh == "ema":
            self.reference = self.ema * self.reference + (1 - self.ema) * current
        return scaled

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "previous": self._previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference, self._previous = state["reference"], state["previous"]


@register_method
class RDSKD(Method):
    name = "rdskd"
    schedule = "two_stage"
    temperature = 10.0
    lr_student = 2e-3

    @classmethod
    def default_weights(cls, dataset: str) -> dict[str, float]:
        return {"w_oh": 1.0, "w_ie": 1.0, "w_ds": 1.0, "w_a": 0.0}

    def __init__(self, cfg: DistillConfig, teacher: torch.nn.Module, student: torch.nn.Module,
                 noise: torch.Generator | None = None):
        super().__init__(cfg, teacher, student, noise)
        self.penalty = ExponentialPenalty(cfg.penalty_refresh, cfg.penalty_epoch, cfg.penalty_ema) if cfg.penalty else None

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        cfg = self.cfg
        logits = teacher_out.logits
        oh, ie = onehot_loss(logits), info_entropy_loss(logits)
        ds = inter_sample_diversity_loss(logits, x)
        conflicting = torch.stack([oh, ie])
        if self.penalty is not None:
            conflicting = self.penalty(conflicting, g_step)
        total = cfg.w_oh * conflicting[0] + cfg.w_ie * conflicting[1] + cfg.w_ds * ds
        terms = {"total": total, "oh": oh, "ie": ie, "ds": ds}
        if self.penalty is not None:
            terms["ref_oh"], terms["ref_ie"] = self.penalty.reference[0], self.penalty.reference[1]
        return self.add_bn_term(terms)

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        return {"total": kd_kl_loss(student(x), teacher_out.logits, self.cfg.temperature)}

    def state_dict(self) -> dict[str, Any]:
        return {"penalty": self.penalty.state_dict() if self.penalty else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.penalty is not None:
            self.penalty.load_state_dict(state["penalty"])
