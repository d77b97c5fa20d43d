"""A single `python -m rdskd_dist.train` distillation as an MLflow run (and a registered student version).

Logged after the run from the driver process: the resolved config as params, the progress
reports as metrics over steps, the final metrics, tags, files (student.pt, result.json, the
generator and its sample grid when the run left generator weights) and the student as an MLflow
pt2 model, registered as a new version of `rdskd-<dataset>-<student-arch>` (no alias: the
`champion` alias belongs to sweeps).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from rdskd_dist.errors import UserError, one_line
from rdskd_dist.redact import redact
from rdskd_dist.tracking import names
from rdskd_dist.tracking.artifacts import find_outputs
from rdskd_dist.tracking.client import RetryingClient
from rdskd_dist.tracking.registry import register_version
from rdskd_dist.tracking.runs import ensure_experiment, log_metric_history, standard_tags
from rdskd_dist.tracking.trials import config_tags, log_finished
from rdskd_dist.tracking.uri import describe_uri, resolve_tracking_uri


def _resolved(cfg) -> dict[str, Any]:
    from rdskd_dist.data import get_spec
    from rdskd_dist.engine.resolve import resolve_config

    return resolve_config(cfg, get_spec(cfg.dataset)).model_dump(mode="json")


def log_train_run(cfg, result, output_dir: Optional[str | os.PathLike], metrics_history: Iterable[Mapping[str, Any]],
                  *, tracking_uri: Optional[str] = None, checkpoint_dir: Optional[str | os.PathLike] = None,
                  run_name: Optional[str] = None, experiment: str = names.TRAIN_EXPERIMENT,
                  register: bool = True) -> dict[str, Any]:
    """Log one finished distillation. `cfg` is its DistillConfig, `result` its DistillResult (or dict),
    `metrics_history` the progress reports (`on_report` metrics, or a Ray checkpoint's history.json).

    Returns {run_id, experiment_id, model_id, model_version, model_uri}. Raises UserError when the
    run could not be logged (after the client's retries)."""
    uri = resolve_tracking_uri(tracking_uri)
    client = RetryingClient(uri)
    res = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    config = _resolved(cfg)
    if output_dir is not None and (Path(output_dir) / "result.json").is_file():
        try:  # the outputs' own record of the resolved config wins (it is what ran)
            config = json.loads((Path(output_dir) / "result.json").read_text()).get("config") or config
        except (OSError, json.JSONDecodeError):
            pass
    name = run_name or f"{config['method']}-{config['dataset']}-{config['student']}-{time.strftime('%m%d-%H%M%S')}"
    try:
        experiment_id = ensure_experiment(client, experiment, "Single distillations run with python -m rdskd_dist.train "
                                          "(one run each). " + names.glossary())
        wall = float(res.get("wall_time_s") or 0.0)
        start_ms = int((time.time() - wall) * 1000)
        note = (f"Distillation of a {config.get('student')} student on {config['dataset']} with {config['method']} "
                f"({res.get('generator_steps')} generator / {res.get('student_steps')} student steps, "
                f"{res.get('world_size', 1)} worker(s)): student test accuracy {res.get('student_accuracy', 0):.2f}%.")
        tags = {**standard_tags("python -m rdskd_dist.train"), names.TAG_RUN_TYPE: "train", names.MLFLOW_NOTE: note,
                **config_tags(config)}
        run = client.create_run(experiment_id, start_time=start_ms, run_name=name, tags=tags)
        run_id = run.info.run_id
        outputs = find_outputs(output_dir, checkpoint_dir)
        history = list(metrics_history)
        if not history and outputs.history is not None:  # a Ray Train run: its final checkpoint's reports
            history = json.loads(outputs.history.read_text())
        span = max(len(history), 1)
        rows = [(int(m.get("iteration", i + 1)), start_ms + int(1000 * wall * (i + 1) / span), names.progress_metrics(m))
                for i, m in enumerate(history) if "iteration" in m]
        log_metric_history(client, run_id, rows)
        model_id = log_finished(client, run_id, experiment_id, config=config, result=res, outputs=outputs,
                                title=name, extra_tags={names.TAG_STATUS: "ok"}, model_name=f"student-{name}")
        info: dict[str, Any] = {"run_id": run_id, "experiment_id": experiment_id, "model_id": model_id,
                                "model_version": None, "model_uri": None, "tracking_uri": redact(uri)}
        if register and model_id:
            model_name = names.student_model_name(config["dataset"], config["student"])
            lineage = {**config_tags(config), "train_run_id": run_id, names.TAG_GIT: tags.get(names.TAG_GIT),
                       "student_accuracy": repr(float(res["student_accuracy"]))}
            version = register_version(
                client, model_name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id,
                tags={k: str(v) for k, v in lineage.items() if v is not None},
                description=f"Train run {name}: {config['method']}, student accuracy {res['student_accuracy']:.2f}%.",
                model_description=names.student_model_description(config["dataset"], config["student"]),
                model_tags={names.TAG_DATASET: config["dataset"], names.TAG_STUDENT: config["student"]})
            info["model_version"] = version.version
            info["model_uri"] = f"models:/{model_name}/{version.version}"
        client.set_terminated(run_id, "FINISHED")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the CLI; the outputs on disk are intact
        raise UserError(f"could not log the run to MLflow at {redact(uri)}: {one_line(exc)}"
                        + (f" (outputs are in {output_dir})" if output_dir else "")) from None
    where = f"; registered {info['model_uri']}" if info["model_uri"] else ""
    print(f"MLflow: run {run_id} in experiment {experiment!r}{where}; {describe_uri(uri, experiment_id)}", flush=True)
    return info
