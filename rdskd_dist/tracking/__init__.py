"""MLflow tracking and registry for rdskd-dist: sweeps, trials, train runs, students and teachers.

    from rdskd_dist.tracking import check_tracking_uri, SweepTracker, log_train_run, \
        register_teacher, resolve_teacher_uri

* `check_tracking_uri(uri)`: validate (and normalise) a tracking URI before any training; an
  unreachable server or a malformed URI is a one-line `UserError`.
* `SweepTracker`: a sweep's parent run, the Ray Tune callback that records each trial as a child
  run from the driver, and `finish(...)`, which logs the sweep's files and registers its champion.
* `log_train_run(cfg, result, output_dir, metrics_history)`: one train run (and a model version).
* `register_teacher(path, dataset, arch)` -> `models:/rdskd-teacher-<dataset>-<arch>@current`;
  `resolve_teacher_uri(uri)` -> local checkpoint path (downloaded, SHA-256 checked).

Modules by concern: `uri` (where, fail-fast check; no mlflow import), `client` (retries),
`names` (naming), `runs` (experiments, batched logging), `artifacts` (files, pt2 model, sample
grid), `trials` (one finished distillation), `tune_callback`, `sweep`, `train_run`, `registry`.
Importing this package is cheap: mlflow, torch and ray load on first use of what needs them.
"""

from __future__ import annotations

from typing import Any

from rdskd_dist.tracking.uri import check_tracking_uri, default_tracking_uri, resolve_tracking_uri

_LAZY = {
    "SweepTracker": "rdskd_dist.tracking.sweep",
    "log_train_run": "rdskd_dist.tracking.train_run",
    "register_teacher": "rdskd_dist.tracking.registry",
    "resolve_teacher_uri": "rdskd_dist.tracking.registry",
    "is_models_uri": "rdskd_dist.tracking.registry",
    "parse_models_uri": "rdskd_dist.tracking.registry",
    "RetryingClient": "rdskd_dist.tracking.client",
    "MlflowTrialCallback": "rdskd_dist.tracking.tune_callback",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["check_tracking_uri", "default_tracking_uri", "resolve_tracking_uri", *_LAZY]
