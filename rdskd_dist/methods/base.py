"""The one small interface every distillation method implements, and what a method declares.

A method is one file with one `Method` subclass. It declares
- `Options`: its own typed options (a pydantic model; flat keys on the CLI, in YAML and in Tune specs);
- `references`: its reference settings per dataset (engine options such as loss weights, optimisers,
  learning rates, weight decay, temperature, schedule, lr decay), with the reference code they come from;
- `sweepable`: which of its options a search space may vary.
`rdskd_dist.engine.resolve` fills a config from these and the dataset, so nothing else lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict

from rdskd_dist.errors import UserError
from rdskd_dist.data.registry import input_spec
from rdskd_dist.methods.connectors import build_connector
from rdskd_dist.methods.losses import BNStatsLoss, activation_loss, pixel_range_loss, total_variation_loss
from rdskd_dist.models.base import Features

if TYPE_CHECKING:  # config.py imports the method registry, never this module
    from rdskd_dist.config import DistillConfig

Terms = dict[str, torch.Tensor]  # named loss terms; "total" is what gets back-propagated


class MethodOptions(BaseModel):
    """A method's own options; subclasses add fields with defaults and descriptions."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Method:
    """A method turns teacher outputs on generated samples into generator and student losses.

    The engine owns the networks, optimisers and schedule; a method only computes losses
    (and keeps whatever state its losses need, such as RDSKD's penalty references).
    """

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    # Reference settings: {"*": shared, dataset: overrides}; values are DistillConfig fields.
    references: ClassVar[dict[str, dict[str, Any]]] = {}
    # Where the reference settings come from (printed by --print-config).
    reference_source: ClassVar[str] = ""
    # Options of this method a search space may vary: name -> integer?
    sweepable: ClassVar[dict[str, bool]] = {}
    teacher_features_for_student: ClassVar[bool] = False

    @classmethod
    def reference(cls, dataset: str) -> dict[str, Any]:
        """The method's reference engine settings for a dataset (its own name or the one it stands in for)."""
        return {**cls.references.get("*", {}), **cls.references.get(dataset, {})}

    def __init__(self, cfg: "DistillConfig", teacher: nn.Module, student: nn.Module,
                 noise: torch.Generator | None = None):
        """`noise` is the engine's random generator: draw any randomness from it so resume is exact."""
        self.cfg = cfg
        self.options = self.Options(**cfg.method_options)
        self.teacher = teacher
        self.noise = noise
        self.bn_stats: BNStatsLoss | None = None
        if cfg.w_bn > 0:
            layers = getattr(teacher, "bn_layers", lambda: [])()
            if not layers:
                raise UserError("w_bn > 0 needs a teacher with BatchNorm layers; this teacher has none")
            self.bn_stats = BNStatsLoss(layers)
        self.pixel_bounds: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.w_range > 0:  # raw pixels lie in [0, 1]; the teacher sees them as (p - mean) / std
            self.pixel_bounds = input_spec(cfg).pixel_bounds()
        self.hint: nn.Module | None = None  # w_hint: the connector from the student's feature to the teacher's
        if cfg.w_hint > 0:
            self.hint, self._hint_target = build_connector(cfg.dataset, teacher, student,
                                                           f"{self.name}'s feature hint (w_hint > 0)", "--w-hint 0")
            self.teacher_features_for_student = True  # pooled and banked samples keep the teacher's features

    def teacher_forward(self, x: torch.Tensor, for_generator: bool) -> Features:
        """The teacher's outputs on x; in a generator step this also records BN statistics."""
        if for_generator and self.bn_stats is not None:
            self.bn_stats.start()
        return self.teacher(x, features=True)

    def restart_generator(self) -> None:
        """A fresh generator starts (the `generators` option): drop state tied to the previous one."""

    def student_modules(self) -> nn.Module | None:
        """Extra trainable modules optimised with the student (e.g. connector layers)."""
        return self.hint

    def student_outputs(self, x: torch.Tensor, student: Callable) -> tuple[torch.Tensor, Features | None]:
        """The student's logits on x, and its features when a student term needs them (`w_hint`)."""
        if self.hint is None:
            return student(x), None
        out = student(x, features=True)
        return out.logits, out

    def add_hint_term(self, terms: Terms, student_out: Features | None, teacher_out: Features) -> Terms:
        """The feature hint (`w_hint`, FitNets' hint on the late feature): the connector's map of the student's
        feature against the teacher's, squared error relative to the teacher feature's mean square, so one
        weight means the same on any teacher. Each generated sample then teaches a whole feature vector, not
        only the logits. Metric: `s/hint`."""
        if self.hint is not None:
            target = self._hint_target(teacher_out.preact).float().detach()
            error = (self.hint(student_out.preact).float() - target).pow(2).mean()
            terms["hint"] = error / target.pow(2).mean().clamp_min(1e-8)
            terms["total"] = terms["total"] + self.cfg.w_hint * terms["hint"]
        return terms

    def generator_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable, g_step: int) -> Terms:
        raise NotImplementedError

    def student_loss(self, x: torch.Tensor, teacher_out: Features, student: Callable) -> Terms:
        raise NotImplementedError

    def add_bn_term(self, terms: Terms) -> Terms:
        """Adds the BN-statistics term recorded during the teacher's forward pass, if enabled."""
        if self.bn_stats is not None:
            terms["bn"] = self.bn_stats.collect()
            terms["total"] = terms["total"] + self.cfg.w_bn * terms["bn"]
        return terms

    def activation_term(self, teacher_out: Features, feature: str = "penultimate") -> torch.Tensor:
        """DAFL's activation term (minus the mean absolute activation) on one of the teacher's features, for any
        method that weighs it (`w_a > 0`)."""
        value = getattr(teacher_out, feature)
        if value is None:
            raise UserError(f"the activation term (w_a > 0) of {self.name} needs the teacher's {feature} feature, and "
                            "this teacher gives none (the penultimate feature is the input of its last nn.Linear, "
                            "and this teacher calls no nn.Linear); set --w-a 0")
        return activation_loss(value)

    def add_prior_terms(self, terms: Terms, x: torch.Tensor) -> Terms:
        """The image priors every method's generator loss ends with, each only when its weight is on: the
        BN-statistics term (`w_bn`, teachers with BN), total-variation smoothness of the samples x (`w_tv`,
        any teacher) and the pixel range (`w_range`, any teacher). Metrics: `g/bn`, `g/tv`, `g/range`."""
        self.add_bn_term(terms)
        if self.cfg.w_tv > 0:
            terms["tv"] = total_variation_loss(x)
            terms["total"] = terms["total"] + self.cfg.w_tv * terms["tv"]
        if self.pixel_bounds is not None:
            if self.pixel_bounds[0].device != x.device:  # moved once, on the first generator step
                self.pixel_bounds = tuple(bound.to(x.device) for bound in self.pixel_bounds)
            terms["range"] = pixel_range_loss(x, *self.pixel_bounds)
            terms["total"] = terms["total"] + self.cfg.w_range * terms["range"]
        return terms

    def state_dict(self) -> dict[str, Any]:
        modules = self.student_modules()
        return {"modules": modules.state_dict()} if modules is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        modules = self.student_modules()
        if modules is not None:
            modules.load_state_dict(state["modules"])
