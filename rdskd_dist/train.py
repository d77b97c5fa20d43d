"""`python -m rdskd_dist.train`: one distillation, in this process or (with --workers N) on Ray Train."""

from __future__ import annotations

import sys

from rdskd_dist.adapters.ray_train import ScaleConfig
from rdskd_dist.cli import parse_config
from rdskd_dist.config import DistillConfig
from rdskd_dist.engine import run_distillation
from rdskd_dist.errors import cli_entrypoint


class TrainJobConfig(ScaleConfig, DistillConfig):
    """A distillation plus where it runs: the CLI's and YAML files' one validated config."""

    def distill_config(self) -> DistillConfig:
        return DistillConfig(**{name: getattr(self, name) for name in DistillConfig.model_fields})

    def scale_config(self) -> ScaleConfig:
        return ScaleConfig(**{name: getattr(self, name) for name in ScaleConfig.model_fields})


def format_progress(metrics: dict[str, float]) -> str:
    terms = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" in k)
    return f"step {int(metrics['iteration'])}: {terms} samples/s={metrics['samples_per_s']:.0f}"


def print_progress(metrics: dict[str, float], _checkpoint) -> None:
    print(format_progress(metrics), flush=True)


@cli_entrypoint
def main(argv: list[str] | None = None) -> None:
    job = parse_config(TrainJobConfig, argv, "python -m rdskd_dist.train",
                       "Distil a teacher into a student without its training data.")
    cfg, scale = job.distill_config(), job.scale_config()
    if scale.workers == 0:
        result = run_distillation(cfg, on_report=print_progress)
    else:
        from rdskd_dist.adapters.ray_train import ProgressPrinter, result_from_metrics, train_on_ray

        result = result_from_metrics(train_on_ray(cfg, scale, callbacks=[ProgressPrinter(format_progress)]))
    print(result.line(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
