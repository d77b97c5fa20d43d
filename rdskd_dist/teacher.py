"""`python -m rdskd_dist.teacher`: train a teacher on real data and save a weights-only checkpoint.

The command line only: training is `teacher_training.py`, checkpoint I/O `teachers.py`.
"""

from __future__ import annotations

import sys
import time

from rdskd_dist.cli import parse_config
from rdskd_dist.errors import cli_entrypoint
from rdskd_dist.teacher_training import TeacherConfig, train_teacher
from rdskd_dist.teachers import save_teacher

__all__ = ["main"]


@cli_entrypoint
def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(TeacherConfig, argv, "python -m rdskd_dist.teacher",
                       "Train a teacher classifier on real data and save a weights-only checkpoint.")
    start = time.perf_counter()
    model, accuracy = train_teacher(cfg)
    digest = save_teacher(model, cfg.out, dataset=cfg.dataset, test_accuracy=accuracy)
    print(f"teacher: arch={model.spec['name']} dataset={cfg.dataset} test_acc={accuracy:.2f}% "
          f"sha256={digest} out={cfg.out} wall={time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
