"""`python -m rdskd_dist.train`: one distillation, in this process or (with --workers N) on Ray Train."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Optional

from pydantic import Field

from rdskd_dist.adapters.scale import ScaleConfig
from rdskd_dist.cli import parse_config_with_sources
from rdskd_dist.config import DistillConfig
from rdskd_dist.errors import UserError, cli_entrypoint
from rdskd_dist.outputs import check_local_storage, check_writable_file, check_writable_folder
from rdskd_dist.tracking import resolve_tracking_uri


class TrainJobConfig(ScaleConfig, DistillConfig):
    """A distillation plus where it runs: the CLI's and YAML files' one validated config."""

    print_config: bool = Field(False, description="print the resolved configuration with each value's source "
                                                  "(reference, dataset, default, command line, file:line) and exit")
    tracking: bool = Field(True, description="log the run to MLflow and register its student")
    tracking_uri: Optional[str] = Field(None, description="MLflow tracking server or store (default: "
                                                          "$MLFLOW_TRACKING_URI, else sqlite ./mlflow.db)")

    def distill_config(self) -> DistillConfig:
        # only what was given, so that the resolve step can tell given values from defaults
        return DistillConfig(**{name: getattr(self, name) for name in DistillConfig.model_fields
                                if name in self.model_fields_set})

    def scale_config(self) -> ScaleConfig:
        return ScaleConfig(**{name: getattr(self, name) for name in ScaleConfig.model_fields})


def check_output_locations(cfg: DistillConfig, scale: ScaleConfig) -> None:
    """Every place the run writes to, checked writable (nothing is created): a one-line UserError otherwise."""
    if cfg.output is not None:
        check_writable_folder(cfg.output, "output folder")
    if cfg.checkpoint is not None and scale.workers == 0:  # with workers, --checkpoint is refused later
        check_writable_file(cfg.checkpoint, "checkpoint file")
    if scale.workers > 0:
        check_local_storage(scale.storage, "runs", "Ray storage folder")


def print_resolved_config(cfg: DistillConfig, given: dict[str, str]) -> None:
    """Every option of the distillation as it would run, and where its value comes from."""
    from rdskd_dist.data import get_spec
    from rdskd_dist.engine.resolve import describe_sources
    from rdskd_dist.methods import get_method_class

    spec = get_spec(cfg.dataset)
    rows = describe_sources(cfg, spec, given)
    width = max(len(name) for name, _, _ in rows)
    print(f"# method {cfg.method} on {cfg.dataset}; reference code: {get_method_class(cfg.method).reference_source}")
    for name, value, source in rows:
        print(f"{name:<{width}}  {str(value):<24}  {source}")


def format_progress(metrics: dict[str, float]) -> str:
    terms = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" in k)
    return f"step {int(metrics['iteration'])}: {terms} samples/s={metrics['samples_per_s']:.0f}"


def print_progress(metrics: dict[str, float], _checkpoint) -> None:
    print(format_progress(metrics), flush=True)


@cli_entrypoint
def main(argv: list[str] | None = None) -> None:
    job, given = parse_config_with_sources(TrainJobConfig, argv, "python -m rdskd_dist.train",
                                           "Distil a teacher into a student without its training data.")
    cfg, scale = job.distill_config(), job.scale_config()
    if job.print_config:
        print_resolved_config(cfg, given)
        return
    if scale.address and scale.workers == 0:
        raise UserError("--address joins a Ray cluster for --workers N >= 1; --workers 0 runs in this process")
    check_output_locations(cfg, scale)  # before the teacher, the data or Ray: a bad folder costs no training
    tracking_uri = resolve_tracking_uri(job.tracking_uri) if job.tracking else None  # fails fast, before training
    if cfg.teacher and cfg.teacher.startswith("models:/"):  # a registered teacher: download its checkpoint
        from rdskd_dist.tracking import resolve_teacher_uri

        cfg = cfg.model_copy(update={"teacher": resolve_teacher_uri(cfg.teacher, job.tracking_uri)})
    if tracking_uri and cfg.output is None:  # the run's files are logged from its output folder
        cfg = cfg.model_copy(update={"output": Path(tempfile.mkdtemp(prefix="rdskd-train-"))})
    history, checkpoint = [], None
    if scale.workers == 0:
        from rdskd_dist.engine import run_distillation  # torch: imported once the options are valid

        result = run_distillation(cfg, on_report=lambda m, c: (history.append(m), print_progress(m, c)))
    else:
        from rdskd_dist.adapters.ray_train import ProgressPrinter, result_from_metrics, train_on_ray

        metrics = train_on_ray(cfg, scale, callbacks=[ProgressPrinter(format_progress)])
        result, checkpoint = result_from_metrics(metrics), metrics.get("checkpoint")
    print(result.line(), flush=True)
    if tracking_uri:
        from rdskd_dist.tracking import log_train_run

        log_train_run(cfg, result, cfg.output, history, tracking_uri=tracking_uri, checkpoint_dir=checkpoint,
                      run_name=scale.run_name)


if __name__ == "__main__":
    sys.exit(main())
