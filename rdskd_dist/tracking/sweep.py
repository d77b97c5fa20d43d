"""A sweep in MLflow: the experiment (named after the sweep), its parent run, the trials' child runs
(via the Tune callback) and, at the end, the sweep's files and its champion in the registry.

    tracker = SweepTracker.for_spec(spec, tracking_uri, resume=False)
    tracker.start()                                  # parent run (reused by a resumed sweep)
    RunConfig(callbacks=[..., tracker.callback()])   # one child run per trial, from the driver
    tracker.finish(parquet, [summary.json, summary.md], plots_dir)  # files, champion, parent closed

The champion is the best trial by the sweep's objective (default: max `student_accuracy`) among
the trials whose runs hold a complete student model; it is registered as
`rdskd-<dataset>-<student-arch>` with alias `champion` and lineage tags (teacher SHA-256, sweep
run id, Ray trial id, trial key). Runs are found again through MLflow itself (tags), so a resumed
sweep's champion may come from an earlier invocation.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from rdskd_dist.errors import one_line
from rdskd_dist.redact import redact
from rdskd_dist.tracking import names
from rdskd_dist.tracking.client import RetryingClient
from rdskd_dist.tracking.registry import alias_version, existing_version, register_version
from rdskd_dist.tracking.runs import ensure_experiment, log_metrics, log_params, set_tags, standard_tags
from rdskd_dist.tracking.uri import describe_uri, resolve_tracking_uri


class SweepTracker:
    def __init__(self, tracking_uri: Optional[str], sweep: str, *, sweep_dir: str | os.PathLike,
                 params: Optional[Mapping[str, Any]] = None, description: str = "",
                 objective: tuple[str, str] = names.DEFAULT_OBJECTIVE, resume: bool = False,
                 retry_for_s: Optional[float] = None, headline: str = ""):
        self.uri = resolve_tracking_uri(tracking_uri)
        self.sweep, self.sweep_dir = sweep, str(Path(sweep_dir).resolve())
        self.params = dict(params or {})
        self.description = description
        self.headline = headline or f"Data-free distillation sweep {sweep}."
        self.objective = objective
        self.resume = resume
        self.retry_for_s = retry_for_s
        self.experiment_id: Optional[str] = None
        self.run_id: Optional[str] = None
        self._callbacks: list = []

    @functools.cached_property
    def client(self) -> RetryingClient:
        # opened on first use (seconds: MLflow's import and the store's schema check), so that a sweep
        # can open it while its teacher trains
        return RetryingClient(self.uri, self.retry_for_s)

    @classmethod
    def for_spec(cls, spec, tracking_uri: Optional[str] = None, resume: bool = False) -> "SweepTracker":
        """A tracker for a `rdskd_dist.tune.SweepSpec` (read duck-typed: no import of the tune package)."""
        base = spec.base.model_dump(mode="json", exclude_unset=True) if hasattr(spec.base, "model_dump") else {}
        space = {k: (d.model_dump() if hasattr(d, "model_dump") else d) for k, d in spec.space.items()}
        params = {"mode": spec.mode, "methods": ",".join(spec.methods), "num_points": spec.num_points,
                  "seeds": ",".join(map(str, spec.seeds)), "design_seed": spec.design_seed,
                  "reference_method": getattr(spec, "reference", spec.methods[0]), "space": json.dumps(space),
                  "objective": f"{spec.objective.mode} {spec.objective.metric}", "trial_workers": spec.trial.workers,
                  **{f"base.{k}": v for k, v in base.items() if k not in ("teacher", "data_root", "output")}}
        dataset = base.get("dataset", "digits")
        student = base.get("student") or _default_student(dataset)
        per_point = f"{spec.num_points} Sobol points x {len(spec.seeds)} seed(s)" if spec.mode == "robustness" else \
            f"{spec.num_points} Optuna trials per method"
        headline = (f"Data-free distillation sweep {spec.name} ({spec.mode}, {dataset}: {' vs '.join(spec.methods)}). "
                    f"Expand the parent run 'sweep {spec.name}' to see one run per trial (named method-pPOINT-sSEED); "
                    f"the best student is registered as {names.student_model_name(dataset, student)}@champion.")
        description = (f"Sweep **{spec.name}** ({spec.mode}) on {dataset}: methods {', '.join(spec.methods)}, "
                       f"{per_point}. This parent run holds the sweep's spec, results table (results/), summary "
                       "and plots (plots/); each child run is one trial, with its hyperparameters, loss curves, "
                       "final test accuracy, student model, generator weights and a grid of generated samples "
                       f"(samples.png). Sweep folder: {spec.sweep_dir}.")
        return cls(tracking_uri, spec.name, sweep_dir=spec.sweep_dir, params=params, description=description,
                   objective=(spec.objective.metric, spec.objective.mode), resume=resume, headline=headline)

    # ------------------------------------------------------------ start
    def start(self) -> str:
        """Create (or, resuming, reopen) the parent run; returns its id."""
        experiment_note = f"{self.headline}\n\n{names.glossary()}"
        self.experiment_id = ensure_experiment(self.client, self.sweep, experiment_note,
                                               tags={"mlflow.experimentKind": "custom_model_development"})
        if self.resume:
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{names.TAG_RUN_TYPE}` = 'sweep' and tags.`{names.TAG_SWEEP_DIR}` = '{self.sweep_dir}'",
                order_by=["attributes.start_time DESC"], max_results=1)
            if found:
                self.run_id = found[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
                return self.run_id
        tags = {**standard_tags("python -m rdskd_dist.tune"), names.TAG_RUN_TYPE: "sweep", names.TAG_SWEEP: self.sweep,
                names.TAG_SWEEP_DIR: self.sweep_dir, names.MLFLOW_NOTE: self.description or f"Sweep {self.sweep}"}
        run = self.client.create_run(self.experiment_id, run_name=f"sweep {self.sweep}", tags=tags)
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, {k: str(v) for k, v in self.params.items()})
        print(f"MLflow: sweep {self.sweep} -> experiment {self.sweep!r}, run {self.run_id} at {redact(self.uri)}",
              flush=True)
        return self.run_id

    def callback(self, method: Optional[str] = None):
        """The Ray Tune callback (for `RunConfig(callbacks=[...])`) that logs this sweep's trials."""
        from rdskd_dist.tracking.tune_callback import MlflowTrialCallback

        if self.run_id is None:
            self.start()
        callback = MlflowTrialCallback(self.uri, self.experiment_id, self.run_id, self.sweep, method=method,
                                       retry_for_s=self.retry_for_s, score=self.objective[0])
        self._callbacks.append(callback)
        return callback

    # ------------------------------------------------------------ finish
    def finish(self, parquet: Optional[str | os.PathLike] = None, summary: Iterable[str | os.PathLike] = (),
               plots_dir: Optional[str | os.PathLike] = None, best_trial: Optional[str] = None,
               extra_files: Iterable[str | os.PathLike] = ()):
        """Log the sweep's files, register its champion, close the parent run. Returns the champion's
        ModelVersion (None when no trial has a complete student). Never raises for tracking problems
        after the sweep has run: they are printed as warnings."""
        if self.run_id is None:
            return None
        version = None
        for callback in self._callbacks:  # trials' runs first: the champion is chosen among them
            callback.drain()
        try:
            for path in [parquet, *summary]:
                if path and Path(path).is_file():
                    self.client.log_artifact(self.run_id, str(path), "results")
            for path in extra_files:
                if path and Path(path).is_file():
                    self.client.log_artifact(self.run_id, str(path))
            if plots_dir and Path(plots_dir).is_dir() and any(Path(plots_dir).glob("*.png")):
                self.client.log_artifacts(self.run_id, str(plots_dir), "plots")
            rows = read_rows(parquet) if parquet and Path(parquet).is_file() else []
            self._log_summary_metrics(rows)
            version = self._register_champion(rows, best_trial)
            self.close("FINISHED")
        except Exception as exc:  # noqa: BLE001 - the sweep itself succeeded; say what tracking missed
            print(f"warning: MLflow: could not finish sweep run {self.run_id}: {one_line(exc)}", file=sys.stderr,
                  flush=True)
            self.close("FAILED")
        print(f"MLflow: {describe_uri(self.uri, self.experiment_id)}", flush=True)
        return version

    def close(self, status: str = "KILLED") -> None:
        """End the parent run; child runs still open (an interrupted sweep) end as KILLED. Never raises."""
        if self.run_id is None:
            return
        try:
            open_children = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{names.MLFLOW_PARENT}` = '{self.run_id}' and "
                                                    "attributes.status = 'RUNNING'")
            for run in open_children:
                set_tags(self.client, run.info.run_id, {names.TAG_STATUS: "interrupted"})
                self.client.set_terminated(run.info.run_id, "KILLED")
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001 - closing must not hide why the sweep ended
            print(f"warning: MLflow: could not close sweep run {self.run_id}: {one_line(exc)}", file=sys.stderr,
                  flush=True)

    def _log_summary_metrics(self, rows: list[dict[str, Any]]) -> None:
        metric, _ = self.objective
        ok = [r for r in rows if r.get("status") == "ok" and _finite(r.get(metric))]
        values = {"trials": len(rows), "trials_ok": len(ok), "trials_failed": sum(r.get("status") == "failed" for r in rows),
                  "trials_stopped": sum(r.get("status") == "stopped" for r in rows)}
        if ok:
            scores = [float(r[metric]) for r in ok]
            values[f"best_{metric}"] = max(scores) if self.objective[1] == "max" else min(scores)
            short = "accuracy" if metric == names.DEFAULT_OBJECTIVE[0] else metric  # chart names of old sweeps
            for method in sorted({r["method"] for r in ok}):  # one chart per method in the UI's section
                mine = [float(r[metric]) for r in ok if r["method"] == method]
                values[f"{short}_mean/{method}"] = sum(mine) / len(mine)
        log_metrics(self.client, self.run_id, values, step=0)

    def _child_runs(self) -> list:
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{names.MLFLOW_PARENT}` = '{self.run_id}'",
            order_by=["attributes.start_time DESC"], max_results=5000)

    def _register_champion(self, rows: list[dict[str, Any]], best_trial: Optional[str]):
        metric, mode = self.objective
        children = self._child_runs()
        ready = {}
        for run in children:  # newest first: a retried trial's latest complete run wins
            tags = run.data.tags
            key = tags.get(names.TAG_TRIAL_KEY)
            if key and key not in ready and tags.get(names.TAG_MODEL_ID) and tags.get(names.TAG_STATUS) == "ok":
                ready[key] = run
        best, unlogged = champion_choice(rows, set(ready), metric, mode, best_trial)
        if unlogged is not None:  # e.g. a sweep resumed from a ledger whose early trials logged elsewhere
            print(f"note: MLflow: the sweep's best trial {unlogged['key']} ({metric} {float(unlogged[metric]):.2f}) "
                  "has no logged student model in this tracking store; registering the best trial that has one",
                  file=sys.stderr, flush=True)
        if best is None:
            if rows:
                print("warning: MLflow: no trial with a logged student model to register as champion", file=sys.stderr,
                      flush=True)
            return None
        run = ready[best["key"]]
        tags = run.data.tags
        dataset = tags.get(names.TAG_DATASET) or best.get("dataset") or "unknown"
        student = tags.get(names.TAG_STUDENT) or best.get("student") or "student"
        name = names.student_model_name(dataset, student)
        model_id = tags[names.TAG_MODEL_ID]
        lineage = {
            names.TAG_TEACHER_SHA: tags.get(names.TAG_TEACHER_SHA, ""), names.TAG_SWEEP_RUN_ID: self.run_id,
            names.TAG_SWEEP: self.sweep, names.TAG_TRIAL_ID: tags.get(names.TAG_TRIAL_ID, ""),
            names.TAG_TRIAL_KEY: best["key"], "trial_run_id": run.info.run_id, names.TAG_METHOD: best.get("method", ""),
            names.TAG_DATASET: dataset, metric: repr(float(best[metric])), "objective": f"{mode} {metric}",
            names.TAG_GIT: tags.get(names.TAG_GIT, ""),
        }
        source = f"models:/{model_id}"
        reused = existing_version(self.client, name, source) is not None
        holder = alias_version(self.client, name, names.CHAMPION)
        keeps = holder is not None and holder.source != source and _better(holder, metric, mode, float(best[metric]))
        version = register_version(
            self.client, name, source=source, run_id=run.info.run_id, model_id=model_id,
            tags={k: v for k, v in lineage.items() if v != ""}, alias=names.LATEST_SWEEP,
            description=(f"Best trial of sweep {self.sweep} by {mode} {metric}: {best['key']} "
                         f"({metric} {float(best[metric]):.2f})."),
            model_description=names.student_model_description(dataset, student),
            model_tags={names.TAG_DATASET: dataset, names.TAG_STUDENT: student})
        if not keeps:
            self.client.set_registered_model_alias(name, names.CHAMPION, version.version)
        set_tags(self.client, self.run_id, {"rdskd.champion": f"models:/{name}/{version.version}",
                                            "rdskd.champion_trial": best["key"]})
        done = "alias latest-sweep back on the already registered" if reused else "registered"
        held = (f"; champion stays version {holder.version} ({metric} {holder.tags[metric]})" if keeps
                else ", champion")
        print(f"MLflow: {done} {name} version {version.version} (alias latest-sweep{held}) from trial "
              f"{best['key']} ({metric} {float(best[metric]):.2f})", flush=True)
        return version


def champion_choice(rows: list[dict[str, Any]], logged: set[str], metric: str, mode: str,
                    best_trial: Optional[str] = None) -> tuple[Optional[dict], Optional[dict]]:
    """The finished trial to register (the best by the objective among those with a logged model, or only
    `best_trial` when given; ties: the earliest finished), and the sweep's overall best when it has no logged
    model and so cannot be the one registered (else None)."""
    sign = 1 if mode == "max" else -1

    def best_of(candidates: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
        return max(candidates, key=lambda r: (sign * float(r[metric]), -(r.get("finished_at") or 0)), default=None)

    finished = [r for r in rows if r.get("status") == "ok" and _finite(r.get(metric))]
    candidates = [r for r in finished if r.get("key") in logged]
    if best_trial is not None:
        candidates = [r for r in candidates if r["key"] == best_trial]
    overall = best_of(finished)
    unlogged = overall if overall is not None and overall.get("key") not in logged else None
    return best_of(candidates), unlogged


def _better(holder, metric: str, mode: str, value: float) -> bool:
    """Whether the version holding the champion alias beats `value` on the same objective (a version
    registered under another objective, or without the figure, does not: the new best takes the alias)."""
    tags = getattr(holder, "tags", None) or {}
    try:
        held = float(tags[metric])
    except (KeyError, ValueError):
        return False
    if tags.get("objective") != f"{mode} {metric}" or not math.isfinite(held):
        return False
    return held > value if mode == "max" else held < value


def _default_student(dataset: str) -> str:
    try:
        from rdskd_dist.data import get_spec

        return get_spec(dataset).student_arch
    except Exception:  # noqa: BLE001 - only used in a description
        return "student"


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def read_rows(parquet: str | os.PathLike) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(parquet).to_pylist()


__all__ = ["SweepTracker", "read_rows"]

