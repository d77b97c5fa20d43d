"""Robustness mode: one Tune grid over the precomputed (method, point, seed) trials.

Pairing is exact by construction (every method gets the same Sobol points and seeds, see
`tune/design.py`) and every trial gets the same budget: no searcher, no scheduler, no early stop.
"""

from __future__ import annotations

import math
from typing import Any

from rdskd_dist.files import atomic_write_json
from rdskd_dist.tune.design import TrialPlan, robustness_design, shared_row, shared_trials
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.modes.base import TuneArguments, TunerRun
from rdskd_dist.tune.rows import checked_row
from rdskd_dist.tune.spec import SweepSpec


class Robustness:
    def plan(self, spec: SweepSpec, folder: SweepFolder, rows: list[dict[str, Any]], done: set[str],
             budget: float) -> list[TunerRun]:
        design = robustness_design(spec)
        shared = shared_trials(spec, design)
        atomic_write_json({"keys": [{**p.to_dict(), "same_as": shared.get(p.key)} for p in design]},
                          folder.path / "design.json")
        finished = {r["key"]: r for r in rows if r["key"] in done}
        for plan in design:  # repeats of trials that finished before (a resumed sweep, or one grown by points)
            if plan.key in shared and plan.key not in done and shared[plan.key] in finished:
                folder.record(checked_row(shared_row(finished[shared[plan.key]], plan, spec)))
        todo = [p for p in design if p.key not in done and p.key not in shared]
        todo = todo if budget == math.inf else todo[:int(budget)]
        return [TunerRun("robustness", len(todo), plans=todo)] if todo else []

    def tune_arguments(self, spec: SweepSpec, folder: SweepFolder, run: TunerRun) -> TuneArguments:
        from ray import tune

        return TuneArguments(param_space={"plan": tune.grid_search([p.to_dict() for p in run.plans])})

    def expected_trials(self, spec: SweepSpec) -> int:
        return spec.num_points * len(spec.seeds) * len(spec.methods)

    def shared(self, spec: SweepSpec) -> dict[str, list[TrialPlan]]:
        design = robustness_design(spec)
        by_key = {p.key: p for p in design}
        out: dict[str, list[TrialPlan]] = {}
        for key, source in shared_trials(spec, design).items():
            out.setdefault(source, []).append(by_key[key])
        return out

    def is_complete(self, spec: SweepSpec, rows: list[dict[str, Any]]) -> bool:
        return {p.key for p in robustness_design(spec)} <= {r["key"] for r in rows}

    def unreported(self, spec: SweepSpec, last: dict[str, Any]) -> tuple[str, str]:
        return "failed", "trial ended without a final report"
