"""The search space: which options a sweep may vary, and one axis of it (`Dim`)."""

from __future__ import annotations

import math
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rdskd_dist.config import ENGINE_SWEEPABLE
from rdskd_dist.methods.registry import method_sweepable


def sweepable_options() -> dict[str, bool]:
    """Options a search space may vary, and whether they are integers: the engine's and every method's own
    (read from the registry each time, so a method added at run time is included)."""
    return {**ENGINE_SWEEPABLE, **method_sweepable()}


class Dim(BaseModel):
    """One axis of the search space.

    `relative: true` (default): values are multipliers of the method's reference value (its
    resolved DistillConfig value: the method's reference weight, lr, ... or the base option),
    so x0.1..x10 means the same for every method. `relative: false`: absolute values.
    Either a range (`low`, `high`, log scale by default) or a list of `choices`.
    """

    model_config = ConfigDict(extra="forbid")

    low: Optional[float] = Field(None, description="lower end of the range")
    high: Optional[float] = Field(None, description="upper end of the range")
    log: bool = Field(True, description="log-uniform between low and high (else uniform)")
    relative: bool = Field(True, description="values multiply the method's reference value")
    choices: Optional[list[float]] = Field(None, min_length=1, description="discrete values instead of a range")

    @model_validator(mode="after")
    def _check(self) -> "Dim":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either low/high or choices, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got {self.low})")
        return self

    def value(self, u: float) -> float:
        """The design value at unit coordinate u in [0, 1)."""
        if self.choices is not None:
            return float(self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)])
        if self.log:
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return float(self.low + u * (self.high - self.low))

    def contains(self, x: float) -> bool:
        if self.choices is not None:
            return x in self.choices
        return self.low * (1 - 1e-9) <= x <= self.high * (1 + 1e-9)

    def distribution(self):
        """The axis as an Optuna distribution (the searcher's space, and studies rebuilt for importances)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        return FloatDistribution(self.low, self.high, log=self.log)
