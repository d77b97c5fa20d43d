"""Where the loop's time goes, op by op: torch.profiler over real engine steps.

    python bench/profile_loop.py                    # digits shapes (32x32 LeNet-5), batch 256, auto precision + channels_last
    python bench/profile_loop.py --precision fp32 --no-channels-last --name profile_fp32

Profiles `--steps` generator steps (RDSKD stage 1) and `--steps` student steps on pooled samples,
each after one warm-up step, and writes the top ops by self CPU time per stage to
docs/results/{name}.{json,md}. (`py-spy record -o loop.svg -- python bench/profile_loop.py` gives
the Python-level view of the same run.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec  # noqa: E402
from rdskd_dist.engine.loop import Distiller  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teachers import freeze  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def profile_steps(engine: Distiller, steps: int, top: int) -> list[dict[str, float]]:
    engine.step()  # warm-up (and, in stage 2, the pool fill)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            engine.step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls": e.count, "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--top", type=int, default=12, help="ops listed per stage")
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results")
    p.add_argument("--name", default="profile")
    args = p.parse_args(argv)

    spec = get_spec("digits")
    torch.manual_seed(0)
    teacher = freeze(create_model(spec.teacher_arch, num_classes=spec.num_classes, in_channels=spec.channels,
                                  image_size=spec.image_size))
    cfg = DistillConfig(dataset="digits", method="rdskd", batch_size=args.batch_size, device="cpu",
                        generator_steps=args.steps + 1, student_steps=args.steps + 1, sample_pool=4,
                        precision=args.precision, channels_last=args.channels_last)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    stages = {"generator step (stage 1)": profile_steps(engine, args.steps, args.top),
              "student step, pooled samples (stage 2)": profile_steps(engine, args.steps, args.top)}
    parts = [f"# Profile of the loop\n\nRDSKD, 32x32 LeNet-5 -> LeNet-5-half, batch {args.batch_size}, "
             f"{engine.cfg.precision}, channels_last={args.channels_last}, {args.steps} profiled steps per stage "
             f"(torch.profiler, self CPU time).\n"]
    for stage, rows in stages.items():
        parts.append(f"\n## {stage}\n\n| op | calls/step | self ms/step | share |\n|---|---|---|---|")
        parts += [f"| `{r['op']}` | {r['calls'] / args.steps:g} | {r['self_ms_per_step']:.1f} | {100 * r['share']:.1f}% |"
                  for r in rows]
    md = "\n".join(parts) + "\n"
    write_results(args.out_dir, args.name, {"config": cfg.model_dump(mode="json"), "stages": stages}, md)
    print(md)


if __name__ == "__main__":
    main()
