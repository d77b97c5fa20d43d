"""Logging one finished distillation (a sweep trial or a train run) into its MLflow run.

Shared by the Tune callback and `log_train_run`: params from the resolved config, final metrics,
tags, the run's files (student.pt, result.json, generator, sample grid) and the student as an
MLflow pt2 model. Returns the LoggedModel id, or None when the student could not be logged.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Mapping, Optional

from rdskd_dist.errors import one_line
from rdskd_dist.tracking import names
from rdskd_dist.tracking.artifacts import RunOutputs, log_run_files, log_student_model
from rdskd_dist.tracking.client import RetryingClient
from rdskd_dist.tracking.runs import log_metrics, log_params, set_tags


@functools.lru_cache(maxsize=32)
def teacher_digest(path: Optional[str]) -> Optional[str]:
    from pathlib import Path

    from rdskd_dist.files import sha256_file

    if not path or not Path(path).is_file():
        return None
    return sha256_file(path)


def config_tags(config: Mapping[str, Any]) -> dict[str, str]:
    sha = config.get("teacher_sha256") or teacher_digest(config.get("teacher"))
    tags = {names.TAG_METHOD: config.get("method"), names.TAG_DATASET: config.get("dataset"),
            names.TAG_STUDENT: config.get("student"), names.TAG_TEACHER_SHA: sha}
    return {k: str(v) for k, v in tags.items() if v is not None}


def log_finished(client: RetryingClient, run_id: str, experiment_id: str, *, config: Mapping[str, Any],
                 result: Mapping[str, Any], outputs: Optional[RunOutputs], title: str,
                 logged_params: Mapping[str, str] = {}, step: Optional[int] = None,
                 extra_tags: Optional[Mapping[str, Any]] = None, model_name: str = "student") -> Optional[str]:
    """Params, final metrics, tags, files and model of a finished distillation; returns the model id."""
    log_params(client, run_id, names.params_from_config(config), already=logged_params)
    final = names.final_metrics(result)
    step = int(step if step is not None else result.get("iterations") or 0)
    if final:
        log_metrics(client, run_id, final, step=step)
    set_tags(client, run_id, {**config_tags(config), **(extra_tags or {})})
    if outputs is None:
        return None
    problems = log_run_files(client, run_id, outputs, dict(config), title=title, teacher_path=config.get("teacher"))
    model_id = None
    try:
        model_id = log_student_model(client, run_id, experiment_id, outputs, step=step, name=model_name,
                                     tags={k: v for k, v in config_tags(config).items()},
                                     params={"student_accuracy": str(result.get("student_accuracy"))})
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the caller decides about registration
        problems.append(f"student model not logged: {one_line(exc)}")
    tags = {names.TAG_ARTIFACTS: "complete" if not problems else "incomplete: " + "; ".join(problems)}
    if model_id:
        tags[names.TAG_MODEL_ID] = model_id
        if final:  # the final metrics again, linked to the model (the UI's Models tab shows them)
            log_metrics(client, run_id, {k: v for k, v in final.items() if k.endswith("accuracy")}, step=step,
                        model_id=model_id)
    set_tags(client, run_id, tags)
    for problem in problems:
        print(f"warning: MLflow run {title}: {problem}", file=sys.stderr, flush=True)
    return model_id


def resolved_config(row: Mapping[str, Any]) -> dict[str, Any]:
    text = row.get("config_json")
    if not text:
        return {}
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return {}
