"""`python -m rdskd_dist.train`: one distillation, in this process or (with --workers N) on Ray Train."""

from __future__ import annotations

import sys

from rdskd_dist.cli import parse_config
from rdskd_dist.config import DistillConfig
from rdskd_dist.engine import run_distillation
from rdskd_dist.errors import cli_entrypoint


def print_progress(metrics: dict[str, float], _checkpoint) -> None:
    terms = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" in k)
    print(f"step {int(metrics['iteration'])}: {terms} samples/s={metrics['samples_per_s']:.0f}", flush=True)


@cli_entrypoint
def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(DistillConfig, argv, "python -m rdskd_dist.train",
                       "Distil a teacher into a student without its training data.")
    result = run_distillation(cfg, on_report=print_progress)
    print(result.line(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
