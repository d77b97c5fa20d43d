"""RDSKD (Han et al., ICASSP 2021): authenticity, class and inter-sample diversity, exponential penalty.

Reference code: PengchaoHan/RDSKD (generator-train.py for stage 1, student-train.py for stage 2).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from pydantic import Field, PositiveInt

from rdskd_dist.methods.base import Method, MethodOptions, Terms
from rdskd_dist.methods.losses import inter_sample_diversity_loss, info_entropy_loss, kd_kl_loss, onehot_loss
from rdskd_dist.methods.registry import register_method
from rdskd_dist.models.base import Features


class ExponentialPenalty:
    """exp(L - r) per term, with detached references r that refresh on a schedule.

    The gradient of exp(L - r) is exp(L - r) * dL: a term that rises above its reference is
    pushed down exponentially harder, one below it is weighted less. Every rule uses the
    reference as it stood before the step and refreshes it afterwards:
    - "epoch": r starts at 0 and, after the second step of each epoch of `epoch` generator steps,
      becomes that step's values (the reference code's behaviour);
    - "step": r is the previous step's value (0 at the first step);
    - "ema": r is an exponential moving average of past values (the first value at step 0).
    """

    def __init__(self, refresh: str, epoch: int, ema: float):
        self.refresh, self.epoch, self.ema = refresh, epoch, ema
        self.reference: torch.Tensor | None = None
        self.used: torch.Tensor | None = None  # the reference the last call scaled by

    def __call__(self, values: torch.Tensor, step: int) -> torch.Tensor:
        current = values.detach()
        if self.reference is None:
            self.reference = current.clone() if self.refresh == "ema" else torch.zeros_like(current)
        self.used = self.reference
        scaled = torch.exp(values - self.used)
        if self.refresh == "epoch":
            if step % self.epoch == (1 if self.epoch > 1 else 0):
                self.reference = current.clone()
        elif self.refresh == "step":
            self.reference = current.clone()
        else:
            self.reference = self.ema * self.reference + (1 - self.ema) * current
        return scaled

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference = state["reference"]


class RDSKDOptions(MethodOptions):
    penalty: bool = Field(True, description="RDSKD: exponential penalty on loss increments (off: plain weighted sum)")
    penalty_refresh: Literal["epoch", "step", "ema"] = Field(
        "epoch", description="RDSKD: how the penalty references refresh (epoch: the reference code)")
    penalty_epoch: PositiveInt = Field(120, description="RDSKD: generator steps per reference refresh ('epoch')")
    penalty_ema: float = Field(0.9, ge=0.0, lt=1.0, description="RDSKD: decay of the 'ema' reference")


@register_method
class RDSKD(Method):
    name = "rdskd"
    Options = RDSKDOptions
    reference_source = "PengchaoHan/RDSKD generator-train.py, student-train.py, utils.py"
    references = {
        # Stage 1: Adam 1e-3; stage 2: Adam 2e-3, no weight decay, T = 10, generator frozen in eval mode.
        "*": dict(schedule="two_stage", w_oh=1.0, w_ie=1.0, w_ds=1.0, w_a=0.0, temperature=10.0,
                  lr_generator=1e-3, student_optimizer="adam", lr_student=2e-3, weight_decay=0.0,
                  lr_decay_at=[], generator_lr_decay_at=[], generator_inner_bn_eps=0.8),
        # The student keeps Adam on CIFAR-10 too; its lr drops x0.1 at epoch 800 of 1000.
        "cifar10": dict(lr_decay_at=[0.8]),
    }
    sweepable = {"penalty_epoch": True, "penalty_ema": False}

    def __init__(self, cfg, teacher: torch.nn.Module, student: torch.nn.Module, noise: torch.Generator | None = None):
        super().__init__(cfg, teacher, student, noise)
        opts = self.options
        self.penalty = ExponentialPenalty(opts.penalty_refresh, opts.penalty_epoch, opts.penalty_ema) \
            if opts.penalty else None

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        cfg = self.cfg
        logits = teacher_out.logits
        oh, ie = onehot_loss(logits, cfg.onehot_targets == "balanced"), info_entropy_loss(logits)
        ds = inter_sample_diversity_loss(logits, x)
        conflicting = torch.stack([oh, ie])
        if self.penalty is not None:
            conflicting = self.penalty(conflicting, g_step)
        total = cfg.w_oh * conflicting[0] + cfg.w_ie * conflicting[1] + cfg.w_ds * ds
        terms = {"total": total, "oh": oh, "ie": ie, "ds": ds}
        if cfg.w_a > 0:  # not in RDSKD's reference (w_a 0): DAFL's term, for teachers whose samples stay small
            terms["a"] = self.activation_term(teacher_out)
            terms["total"] = total + cfg.w_a * terms["a"]
        if self.penalty is not None:
            terms["ref_oh"], terms["ref_ie"] = self.penalty.used[0], self.penalty.used[1]
        return self.add_prior_terms(terms, x)

    def restart_generator(self) -> None:
        if self.penalty is not None:
            self.penalty.reference = None  # a new generator's losses start from scratch

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        logits, out = self.student_outputs(x, student)
        return self.add_hint_term({"total": kd_kl_loss(logits, teacher_out.logits, self.cfg.temperature)}, out,
                                  teacher_out)

    def state_dict(self) -> dict[str, Any]:
        return {"penalty": self.penalty.state_dict() if self.penalty else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.penalty is not None:
            self.penalty.load_state_dict(state["penalty"])
