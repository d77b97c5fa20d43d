"""What the trials of one Tuner share, typed: the spec, the invocation, where Train runs keep their state.

The driver builds one `TrialContext` per Tuner and hands it to every trial (`tune.with_parameters`);
the trial and the driver's fallback rows both turn a Tune config into a plan and a DistillConfig
through it, so a trial's options are derived in one place (`SweepSpec.base_for` + `trial_config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from rdskd_dist.config import DistillConfig
from rdskd_dist.tune.design import TrialPlan, trial_config
from rdskd_dist.tune.spec import SweepSpec


@dataclass(frozen=True)
class TrialContext:
    spec: SweepSpec  # with base.teacher set (the sweep's own teacher, trained or given)
    attempt: str  # this invocation of the sweep: a Train run name per trial and attempt
    train_storage: str  # where trials with workers >= 1 keep their Ray Train runs
    method: Optional[str] = None  # optimize: the Tuner's method (its searcher proposes design values only)

    def plan(self, config: dict[str, Any], trial_id: str) -> TrialPlan:
        """The trial's plan: the grid's (robustness) or the searcher's design values `config["x"]` (optimize)."""
        if "plan" in config:
            return TrialPlan(**config["plan"])
        x = {name: float(value) for name, value in (config.get("x") or {}).items()}
        return TrialPlan(f"{self.method}-{trial_id}", self.method, None, self.spec.seeds[0], x)

    def trial_config(self, plan: TrialPlan) -> tuple[DistillConfig, dict[str, Any]]:
        """The plan's DistillConfig and its row's option columns. In-process trials write their outputs
        into the sweep folder; Train runs keep theirs in the Train storage."""
        output = self.spec.sweep_dir / "trials" / plan.key if self.spec.trial.workers == 0 else None
        return trial_config(self.spec.base_for(plan.method), plan.method, plan.seed, self.spec.space, plan.x, output)

    def first_columns(self, plan: TrialPlan, trial_id: str) -> dict[str, Any]:
        """The row's identity and design columns, known before the trial runs."""
        return {"sweep": self.spec.name, "mode": self.spec.mode, "key": plan.key, "method": plan.method,
                "point": plan.point, "seed": plan.seed, "trial_id": trial_id, "attempt": self.attempt,
                **{f"mult_{name}": plan.x[name] for name, dim in self.spec.space.items() if dim.relative}}
