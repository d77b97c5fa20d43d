"""Optimize mode: one Tuner per method; Optuna TPE proposes design values, ASHA stops poor trials.

`OptunaSearch` keeps its study in the sweep folder's `optuna.db` and optimises the spec's score
(`objective`). ASHA stops trials whose student training loss `s/total` is poor at 25/50% of the
student's steps (`student_progress`); the score only exists in a trial's closing report.
"""

from __future__ import annotations

from typing import Any

from rdskd_dist.tune.design import TrialPlan
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.modes.base import TuneArguments, TunerRun
from rdskd_dist.tune.spec import SweepSpec


class Optimize:
    def plan(self, spec: SweepSpec, folder: SweepFolder, rows: list[dict[str, Any]], done: set[str],
             budget: float) -> list[TunerRun]:
        runs = []
        for index, method in enumerate(spec.methods):
            have = sum(1 for r in rows if r["method"] == method and r["key"] in done)
            count = int(min(max(spec.num_points - have, 0), budget))
            budget -= count
            if count:
                stale = [r["key"] for r in rows if r["method"] == method and r["key"] not in done]
                runs.append(TunerRun(method, count, method=method, index=index, replaces=stale))
        return runs

    def tune_arguments(self, spec: SweepSpec, folder: SweepFolder, run: TunerRun) -> TuneArguments:
        import optuna
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
        from ray.tune.search.optuna import OptunaSearch

        class FinalScoreSearch(OptunaSearch):
            """OptunaSearch that skips intermediate results: the score exists only in a trial's last report."""

            def on_trial_result(self, trial_id, result):
                if self.metric in result:
                    super().on_trial_result(trial_id, result)

        space = {"x": {name: dim.distribution() for name, dim in spec.space.items()}}
        sampler = optuna.samplers.TPESampler(seed=spec.design_seed + run.index, multivariate=True, constant_liar=True)
        search = FinalScoreSearch(space, metric=spec.objective.metric, mode=spec.objective.mode, sampler=sampler,
                                  storage=optuna.storages.RDBStorage(f"sqlite:///{folder.path / 'optuna.db'}"),
                                  study_name=f"{spec.name}-{run.method}")
        es = spec.early_stopping
        if es.enabled:
            # Rungs strictly below 1: a trial is never stopped at its last report (it is evaluating then).
            scheduler = ASHAScheduler(time_attr="student_progress", metric=es.metric, mode=es.mode, max_t=0.99,
                                      grace_period=min(es.grace_period, 0.5), reduction_factor=es.reduction_factor,
                                      stop_last_trials=False)
        else:
            scheduler = FIFOScheduler()
        return TuneArguments(tune_config={"search_alg": search, "scheduler": scheduler, "num_samples": run.trials})

    def expected_trials(self, spec: SweepSpec) -> int:
        return spec.num_points * len(spec.methods)

    def shared(self, spec: SweepSpec) -> dict[str, list[TrialPlan]]:
        return {}  # the searcher proposes new values each time

    def is_complete(self, spec: SweepSpec, rows: list[dict[str, Any]]) -> bool:
        return all(sum(r["method"] == m for r in rows) >= spec.num_points for m in spec.methods)

    def unreported(self, spec: SweepSpec, last: dict[str, Any]) -> tuple[str, str]:
        metric = spec.early_stopping.metric
        return "stopped", (f"stopped early by ASHA at {100 * float(last.get('student_progress', 0)):.0f}% of the "
                           f"student's steps ({metric}={last.get(metric)})")
