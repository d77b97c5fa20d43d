"""What a sweep mode provides (`SweepMode`) and what its plan is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from rdskd_dist.tune.design import TrialPlan
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.spec import SweepSpec


@dataclass
class TunerRun:
    """One Tuner of a sweep invocation."""

    name: str  # its Tune experiment is `<name>-<attempt>`
    trials: int  # trials it starts
    method: Optional[str] = None  # set when every trial is this method's (the searcher proposes design values)
    plans: list[TrialPlan] = field(default_factory=list)  # a fixed grid of trials, when the mode has one
    index: int = 0  # the run's position in the sweep (seeds the searcher)
    replaces: list[str] = field(default_factory=list)  # ledger keys its trials replace (--retry-failed)


@dataclass
class TuneArguments:
    param_space: dict[str, Any] = field(default_factory=dict)
    tune_config: dict[str, Any] = field(default_factory=dict)  # searcher, scheduler, num_samples


class SweepMode(Protocol):
    def plan(self, spec: SweepSpec, folder: SweepFolder, rows: list[dict[str, Any]], done: set[str],
             budget: float) -> list[TunerRun]:
        """The Tuner runs of this invocation: trials without a ledger row (`done` holds the finished keys),
        at most `budget` of them."""

    def tune_arguments(self, spec: SweepSpec, folder: SweepFolder, run: TunerRun) -> TuneArguments: ...

    def expected_trials(self, spec: SweepSpec) -> int: ...

    def is_complete(self, spec: SweepSpec, rows: list[dict[str, Any]]) -> bool: ...

    def shared(self, spec: SweepSpec) -> dict[str, list[TrialPlan]]:
        """{a trial's key: the plans that repeat its result instead of running} (`design.shared_trials`)."""

    def unreported(self, spec: SweepSpec, last: dict[str, Any]) -> tuple[str, str]:
        """(status, error) of a trial that ended without its closing report."""
