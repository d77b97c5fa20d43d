"""The cost of one student step at a named configuration's settings, for before/after comparisons of the code.

    python bench/student_step.py --config rdskd_long_range_gw05_zstd15_b64_s38000 --steps 1000 --repeats 3

Builds the engine with the configuration's options (`bench/mnist_fast.py`) on the dataset's shapes with an untrained
teacher of the dataset's architecture (the cost is a trained one's; no data files are read), a short stage 1 and a
small pool (a student step's cost does not depend on either's size), then times `--repeats` rounds of `--steps`
student steps (relabelling, augmentation, the student's forward, backward and optimiser step) and prints the median
ms per step; `--profile N` then lists the N ops with the most self CPU time over one more round (torch.profiler).
To compare two versions of the code, run this script from each checkout in turn, A B A B, and compare
the medians pair by pair: the machines here drift by more than the differences in question.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402
from mnist_fast import CONFIGS  # noqa: E402
from profile_loop import profile_steps  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec  # noqa: E402
from rdskd_dist.engine.loop import Distiller  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teachers import freeze  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="rdskd_long_range_gw05_zstd15_b64_s38000", choices=sorted(CONFIGS))
    p.add_argument("--dataset", default="mnist", help="shapes only: no files are read")
    p.add_argument("--steps", type=int, default=1000, help="timed student steps per round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", type=int, default=0, metavar="N", help="then list the top N ops of one more round")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    spec = get_spec(args.dataset)
    torch.manual_seed(0)
    teacher = freeze(create_model(spec.teacher_arch, num_classes=spec.num_classes, in_channels=spec.channels,
                                  image_size=spec.image_size))
    options = {**CONFIGS[args.config], "generator_steps": 4, "sample_pool": 8, "memory_bank": 4 * 128,
               "student_steps": args.steps * (args.repeats + 1) + 100, "log_every": 10 ** 9}
    options.pop("dataset", None)
    cfg = DistillConfig(dataset=args.dataset, teacher="untrained", device="cpu", seed=0, eval_teacher=False,
                        **options)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    for _ in range(cfg.generator_steps + 50):  # stage 1, the pool, 50 warm-up student steps
        engine.step()
    rounds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            engine.step()
        rounds.append((time.perf_counter() - start) / args.steps * 1000)
    print(json.dumps({"config": args.config, "student_batch_size": cfg.student_batch_size,
                      "ms_per_student_step": round(statistics.median(rounds), 3),
                      "rounds_ms": [round(r, 3) for r in rounds], "hardware": hardware()}))
    if args.profile:
        print("| op | calls / step | self ms / step | share |\n|---|---|---|---|")
        for row in profile_steps(engine, args.steps, args.profile):
            print(f"| `{row['op']}` | {row['calls'] / args.steps:g} | {row['self_ms_per_step']:.3f} | "
                  f"{100 * row['share']:.1f}% |")


if __name__ == "__main__":
    main()
