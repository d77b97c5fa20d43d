"""Experiments, runs and batched logging with explicit ids (no active run anywhere)."""

from __future__ import annotations

import getpass
import time
from typing import Any, Iterable, Mapping, Optional

from rdskd_dist.tracking import names
from rdskd_dist.tracking.client import RetryingClient, git_commit
from rdskd_dist.tracking.uri import local_artifact_root

MAX_METRICS = 1000
MAX_PARAMS = 100


def ensure_experiment(client: RetryingClient, name: str, description: str = "",
                      tags: Optional[Mapping[str, str]] = None) -> str:
    """The id of experiment `name`, created (with its artifacts beside a local sqlite db) if missing."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    root = local_artifact_root(client.uri)
    location = (root / _safe(name)).as_uri() if root is not None else None
    all_tags = {"mlflow.experimentKind": "custom_model_development", **(tags or {}),
                **({names.MLFLOW_NOTE: description} if description else {})}
    try:
        return client.create_experiment(name, artifact_location=location, tags=all_tags)
    except MlflowException as exc:  # created concurrently
        if getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS":
            return client.get_experiment_by_name(name).experiment_id
        raise


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def standard_tags(source: str) -> dict[str, str]:
    tags = {names.MLFLOW_SOURCE_NAME: source, names.MLFLOW_SOURCE_TYPE: "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        pass
    commit = git_commit()
    if commit:
        tags[names.TAG_GIT] = commit
        tags[names.MLFLOW_GIT] = commit.removesuffix("-dirty")
    return tags


def now_ms() -> int:
    return int(time.time() * 1000)


def log_metrics(client: RetryingClient, run_id: str, values: Mapping[str, float], step: int,
                timestamp_ms: Optional[int] = None, model_id: Optional[str] = None) -> None:
    from mlflow.entities import Metric

    ts = timestamp_ms or now_ms()
    metrics = [Metric(k, float(v), ts, int(step), model_id=model_id) for k, v in values.items()]
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS])


def log_metric_history(client: RetryingClient, run_id: str, rows: Iterable[tuple[int, int, Mapping[str, float]]]) -> None:
    """Many (step, timestamp_ms, metrics) rows in as few batches as possible."""
    from mlflow.entities import Metric

    batch: list = []
    for step, ts, values in rows:
        batch.extend(Metric(k, float(v), ts, int(step)) for k, v in values.items())
        while len(batch) >= MAX_METRICS:
            client.log_batch(run_id, metrics=batch[:MAX_METRICS])
            batch = batch[MAX_METRICS:]
    if batch:
        client.log_batch(run_id, metrics=batch)


def log_params(client: RetryingClient, run_id: str, values: Mapping[str, Any], already: Mapping[str, str] = {}) -> None:
    """Params not yet logged with the same value (MLflow refuses to change a logged param)."""
    from mlflow.entities import Param

    params = [Param(k, str(v)[:6000]) for k, v in values.items() if k not in already]
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(run_id, params=params[i:i + MAX_PARAMS])


def set_tags(client: RetryingClient, run_id: str, values: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    tags = [RunTag(k, str(v)[:8000]) for k, v in values.items() if v is not None]
    for i in range(0, len(tags), MAX_PARAMS):
        client.log_batch(run_id, tags=tags[i:i + MAX_PARAMS])
