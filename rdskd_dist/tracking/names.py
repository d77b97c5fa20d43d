"""Names in MLflow: experiments, runs, registered models, tags, params and metrics.

Metric names: MLflow allows letters, digits, `_ - . : /` and spaces; its UI groups charts into
sections by the part before the first slash and titles each chart with the rest. The engine's
loss terms (`g/oh`, `s/total`, ...) are therefore logged under readable sections and names that
keep the engine's short name first: `generator/oh_one_hot`, `generator/ie_class_entropy`,
`generator/ds_sample_diversity`, `student/total_loss`, `penalty_reference/oh` (RDSKD's `g/ref_oh`),
... (see TERM_NAMES). Any other character becomes `_`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import typing
from typing import Any, Iterable, Mapping, Optional

# ---------------------------------------------------------------- tags
TAG_PREFIX = "rdskd."
TAG_RUN_TYPE = "rdskd.run_type"  # sweep | trial | train | teacher
TAG_SWEEP = "rdskd.sweep"
TAG_SWEEP_DIR = "rdskd.sweep_dir"
TAG_SWEEP_RUN_ID = "rdskd.sweep_run_id"
TAG_TRIAL_KEY = "rdskd.trial_key"
TAG_TRIAL_ID = "ray.trial_id"
TAG_STATUS = "rdskd.status"
TAG_ERROR = "rdskd.error"
TAG_METHOD = "method"
TAG_DATASET = "dataset"
TAG_STUDENT = "student_arch"
TAG_TEACHER_SHA = "teacher_sha256"
TAG_TEACHER_ARCH = "teacher_arch"
TAG_GIT = "git_commit"
TAG_MODEL_ID = "rdskd.model_id"
TAG_ARTIFACTS = "rdskd.artifacts"  # complete | incomplete: <why>
MLFLOW_PARENT = "mlflow.parentRunId"
MLFLOW_NOTE = "mlflow.note.content"
MLFLOW_RUN_NAME = "mlflow.runName"
MLFLOW_GIT = "mlflow.source.git.commit"
MLFLOW_SOURCE_NAME = "mlflow.source.name"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"

CHAMPION = "champion"  # the best student of any sweep on the problem, by the sweeps' objective
LATEST_SWEEP = "latest-sweep"  # the best student of the latest sweep
TEACHER_ALIAS = "current"
TRAIN_EXPERIMENT = "rdskd-train"
TEACHER_EXPERIMENT = "rdskd-teachers"

# ---------------------------------------------------------------- metrics
PREFIXES = {"g": "generator", "s": "student"}
# Engine loss-term short names -> readable MLflow chart titles (the short name stays first).
TERM_NAMES = {
    "total": "total_loss", "oh": "oh_one_hot", "ie": "ie_class_entropy", "ds": "ds_sample_diversity",
    "a": "a_activation", "bn": "bn_statistics", "adv": "adv_discrepancy", "l1": "l1_logit_distance",
    "ar": "ar_activation_boundary", "vi": "vi_virtual_interpolation", "kd": "kd_distillation",
}
# Progress keys (besides loss terms) worth a chart, and their MLflow names. Learning rates are params
# (their decay follows from lr_decay_at), step counters are the x axis.
PROGRESS_NAMES = {"samples_per_s": "samples_per_s"}
FINAL_RENAMES = {"samples_per_s": "samples_per_s_overall"}  # the run's mean, not the last interval's
# How a sweep ranks its trials unless its spec says otherwise (tune/score.py; the champion uses it too).
DEFAULT_OBJECTIVE = ("student_accuracy", "max")


def unscored_keys(score: str) -> tuple[str, ...]:
    """What a failed trial never reports (its row, its closing report, its MLflow run): the student's test
    accuracy (a result field) and the sweep's score (the same column by default)."""
    return tuple(dict.fromkeys(("student_accuracy", score)))


@functools.lru_cache(maxsize=1)
def final_keys() -> tuple[str, ...]:
    """Final metrics of a distillation, logged once at the last step: DistillResult's numeric fields
    (imported here, not at module level: the engine brings torch)."""
    from rdskd_dist.engine.result import DistillResult

    def numeric(hint: Any) -> bool:
        kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
        return len(kinds) == 1 and kinds[0] in (int, float)

    hints = typing.get_type_hints(DistillResult)
    return tuple(name for name, hint in hints.items() if numeric(hint) and name not in FINAL_RENAMES)

_BAD = re.compile(r"[^\w\-. :/]")


def metric_name(key: str) -> str:
    """The MLflow name of an engine report key (`g/oh` -> `generator/oh_one_hot`)."""
    head, sep, tail = key.partition("/")
    if sep and head in PREFIXES:
        if tail.startswith("ref_"):  # RDSKD's exponential-penalty references
            key = f"penalty_reference/{tail[4:]}"
        else:
            key = f"{PREFIXES[head]}/{TERM_NAMES.get(tail, tail)}"
    else:
        key = PROGRESS_NAMES.get(key, key)
    return _BAD.sub("_", key)[:250]


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return None


def progress_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The chartable part of one progress report: loss terms (`g/...`, `s/...`) and PROGRESS_NAMES."""
    out: dict[str, float] = {}
    for key, value in report.items():
        if "/" in key or key in PROGRESS_NAMES:
            v = _number(value)
            if v is not None:
                out[metric_name(key)] = v
    return out


def final_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in final_keys():
        v = _number(result.get(key))
        if v is not None:
            out[key] = v
    for key, name in FINAL_RENAMES.items():
        v = _number(result.get(key))
        if v is not None:
            out[name] = v
    health = result.get("health")
    if isinstance(health, Mapping):  # engine/health.py: scalars as health/<name> (the histogram is in result.json)
        for key, value in health.items():
            v = _number(value)
            if v is not None:
                out[f"health/{key}"] = v
    for key, value in result.items():  # a Ray Train result carries them flat already
        if key.startswith("health/") and _number(value) is not None:
            out[key] = _number(value)
    return out


# ---------------------------------------------------------------- params
def params_from_config(config: Mapping[str, Any], skip: Iterable[str] = ("output", "checkpoint", "data_root")) -> dict[str, str]:
    """Every option of a (resolved) DistillConfig as an MLflow param; None as 'None'."""
    out = {}
    for key, value in sorted(config.items()):
        if key in skip:
            continue
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        out[key] = str(value)[:6000]
    return out


# ---------------------------------------------------------------- entity names
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def student_model_name(dataset: str, arch: str) -> str:
    return f"rdskd-{_slug(dataset)}-{_slug(arch)}"


def student_model_description(dataset: str, arch: str) -> str:
    """The registered student model's description, whoever creates it first (a sweep or a train run)."""
    return (f"Data-free distilled {arch} students for {dataset}. Alias `{CHAMPION}`: the best student of all sweeps "
            f"by their objective; `{LATEST_SWEEP}`: the latest sweep's best. Pull with: python -m rdskd_dist.pull "
            f"models:/{student_model_name(dataset, arch)}@{CHAMPION} --evaluate")


def teacher_model_name(dataset: str, arch: str) -> str:
    return f"rdskd-teacher-{_slug(dataset)}-{_slug(arch)}"


def trial_run_name(key: Optional[str], method: Optional[str], trial_id: str) -> str:
    """`rdskd-p003-s0` reads as 'method rdskd, design point 3, seed 0'; optimize keys are method-trialid."""
    return key or f"{method or 'trial'}-{trial_id}"


def glossary() -> str:
    return ("Metrics (x axis: loop iteration): `generator/*` and `student/*` are the loss terms of the generator and "
            "student steps, averaged over each reporting interval (the engine's names g/oh, s/total, ... with a "
            "readable suffix); `penalty_reference/*` are RDSKD's exponential-penalty references; `samples_per_s` is "
            "per interval, `samples_per_s_overall` the run's mean; `student_accuracy` and `teacher_accuracy` are "
            "test-split accuracies (%) at the end of the budget.")
