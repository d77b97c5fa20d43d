"""Before/after figures for the loop's speedups, and the accuracy check that they cost nothing.

    python bench/speedups.py                 # digits shapes (32x32, LeNet-5 -> LeNet-5-half), batch 256

Part 1 times the real engine's steps in one process, variants interleaved over `--repeats`
rounds: the generator step (RDSKD stage 1) and the student step (stage 2) under fp32 / bf16
autocast / bf16 + channels_last, and the student step on fresh samples of the frozen generator
against samples drawn from a pool the generator filled once. Part 2 trains the same short
budget on the digits demo with the slowest path (fp32, contiguous, fresh samples) and the fastest
(bf16 + channels_last + pool) over `--seeds` and reports both test accuracies.
Writes docs/results/speedups.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec  # noqa: E402
from rdskd_dist.engine import run_distillation  # noqa: E402
from rdskd_dist.engine.loop import Distiller  # noqa: E402
from rdskd_dist.engine.precision import native_bf16, resolve_precision  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teachers import freeze  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: DistillConfig options
    "fp32": dict(precision="fp32", channels_last=False),
    "fp32 + channels_last": dict(precision="fp32", channels_last=True),
    "bf16": dict(precision="bf16", channels_last=False),
    "bf16 + channels_last": dict(precision="bf16", channels_last=True),
    # what the shipped specs and benchmarks run: bf16 only where this CPU computes it natively
    "auto + channels_last": dict(precision="auto", channels_last=True),
}
FAST = "auto + channels_last"
# the lighter generator option: half the channels, a quarter of its convolutions' multiply-adds
HALF_WIDTH = f"{FAST}, generator width 0.5"
VARIANTS[HALF_WIDTH] = dict(VARIANTS[FAST], generator_width=0.5)
POOLED = (FAST, HALF_WIDTH)  # also timed with a pool (its fill and student steps)


def time_steps(engine: Distiller, steps: int) -> float:
    """Seconds per `engine.step()`, after one warm-up step."""
    engine.step()
    start = time.perf_counter()
    for _ in range(steps):
        engine.step()
    return (time.perf_counter() - start) / steps


def step_times(teacher: torch.nn.Module, options: dict[str, Any], batch: int, steps: int,
               pool: int) -> dict[str, float]:
    spec = get_spec("digits")
    cfg = DistillConfig(dataset="digits", method="rdskd", batch_size=batch, generator_steps=steps + 1,
                        student_steps=steps + 1, sample_pool=pool, device="cpu", **options)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    out = {"generator_step_s": time_steps(engine, steps)}
    out["pool_fill_s"] = 0.0
    if pool:  # the first student step fills the pool: time it apart
        start = time.perf_counter()
        engine.step()
        out["pool_fill_s"] = time.perf_counter() - start
        out["student_step_s"] = time_steps(engine, steps - 1)
    else:
        out["student_step_s"] = time_steps(engine, steps)
    return out


def accuracy_runs(teacher_path: Path, seeds: list[int], budget: dict[str, int]) -> dict[str, list[float]]:
    paths = {"slow: fp32, contiguous, fresh samples": dict(precision="fp32", channels_last=False, sample_pool=0),
             f"fast: {FAST} + pool": dict(VARIANTS[FAST], sample_pool=budget["pool"])}
    out: dict[str, list[float]] = {name: [] for name in paths}
    for seed in seeds:
        for name, options in paths.items():
            cfg = DistillConfig(dataset="digits", teacher=str(teacher_path), method="rdskd", seed=seed,
                                generator_steps=budget["generator_steps"], student_steps=budget["student_steps"],
                                batch_size=budget["batch_size"], log_every=50, eval_teacher=False, **options)
            result = run_distillation(cfg)
            out[name].append(result.student_accuracy)
            print(f"  {name}, seed {seed}: {result.student_accuracy:.2f}% in {result.train_time_s:.1f}s", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant and stage")
    p.add_argument("--pool", type=int, default=8, help="sample-pool batches in the timing part")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all variants")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher", default="runs/teachers/digits_lenet5.pt", help="digits teacher (trained if absent)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results")
    p.add_argument("--name", default="speedups")
    p.add_argument("--tiny", action="store_true", help="a tiny accuracy budget (smoke test)")
    p.add_argument("--no-accuracy", action="store_true", help="step times only (part 1)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="variants to time (fp32, the base of the ratios, always is)")
    args = p.parse_args(argv)
    variants = {name: VARIANTS[name] for name in VARIANTS if name == "fp32" or name in args.variants}

    spec = get_spec("digits")
    torch.manual_seed(0)
    teacher = freeze(create_model(spec.teacher_arch, num_classes=spec.num_classes, in_channels=spec.channels,
                                  image_size=spec.image_size))
    timings: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for name, options in variants.items():
            timings.setdefault(name, []).append(step_times(teacher, options, args.batch_size, args.steps, 0))
        for name in (n for n in POOLED if n in variants):
            timings.setdefault(f"{name} + pool", []).append(
                step_times(teacher, variants[name], args.batch_size, args.steps, args.pool))
        print({k: {m: round(x, 4) for m, x in v[-1].items()} for k, v in timings.items()}, flush=True)
    summary = {name: {k: statistics.fmean(r[k] for r in runs) for k in runs[0]} for name, runs in timings.items()}
    base = summary["fp32"]

    teacher_path = Path(args.teacher)
    if not teacher_path.exists() and not args.no_accuracy:
        from rdskd_dist.teacher_training import TeacherConfig, train_teacher
        from rdskd_dist.teachers import save_teacher

        model, acc = train_teacher(TeacherConfig(dataset="digits", epochs=1 if args.tiny else 12, lr=3e-3),
                                   log=lambda _m: None)
        save_teacher(model, teacher_path, dataset="digits", test_accuracy=acc)
    budget = (dict(generator_steps=2, student_steps=4, batch_size=16, pool=2) if args.tiny
              else dict(generator_steps=100, student_steps=300, batch_size=64, pool=50))
    accuracy = {} if args.no_accuracy else accuracy_runs(teacher_path, args.seeds, budget)

    rows = ["| variant | generator step ms | x vs fp32 | student step ms | x vs fp32 | pool fill s (once) |",
            "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        rows.append(f"| {name} | {1000 * s['generator_step_s']:.0f} | {base['generator_step_s'] / s['generator_step_s']:.2f} "
                    f"| {1000 * s['student_step_s']:.1f} | {base['student_step_s'] / s['student_step_s']:.2f} "
                    f"| {s['pool_fill_s']:.2f} |")
    used = resolve_precision("auto", torch.device("cpu"))
    rows += ["", f"`auto` computed in {used} here: this CPU {'has' if native_bf16(torch.device('cpu')) else 'lacks'} "
             f"native bf16 (AVX512-BF16 or AMX; torch's CPU capability: {torch.backends.cpu.get_cpu_capability()})."]
    rows += [] if not accuracy else ["", f"Accuracy at the same budget (digits demo, RDSKD G{budget['generator_steps']}/S{budget['student_steps']}, "
             f"batch {budget['batch_size']}, seeds {args.seeds}):", "", "| path | student acc. % (mean ± std) | per seed |",
             "|---|---|---|"]
    for name, accs in accuracy.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append(f"| {name} | {statistics.fmean(accs):.2f} ± {std:.2f} | {', '.join(f'{a:.2f}' for a in accs)} |")
    md = (f"# Speedups: before and after\n\nStep times of the real engine, batch {args.batch_size}, 32x32 LeNet-5 "
          f"teacher -> LeNet-5-half, {args.steps} timed steps per variant and stage, {args.repeats} interleaved "
          f"rounds (means). Pool: {args.pool} batches.\n\n" + "\n".join(rows) + "\n")
    write_results(args.out_dir, args.name, {"timings": timings, "summary": summary, "accuracy": accuracy,
                                            "accuracy_budget": budget, "batch_size": args.batch_size}, md)
    print(md)


if __name__ == "__main__":
    main()
