"""Does torch.compile pay within a run's budget on this CPU? Eager against compiled engine steps.

    python bench/compile_speed.py                      # MNIST shapes (32x32, LeNet-5 -> LeNet-5-half)

Two engines with the same config, one with its generator, student and teacher wrapped in `torch.compile`.
Their steps are timed in alternating blocks (`--rounds` x `--steps`), so drift of a shared machine hits both
alike; the compiled engine's first steps (compilation) are timed apart. Reported: seconds per generator
step (RDSKD stage 1) and per student step (stage 2, pool + bank, augmentation on), the compile cost, and
the number of steps after which compiling has paid for itself (never, if compiled steps are not faster).
Writes docs/results/compile_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec  # noqa: E402
from rdskd_dist.engine.loop import Distiller  # noqa: E402
from rdskd_dist.engine.precision import resolve_precision  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teachers import freeze  # noqa: E402


def make_engine(args, compiled: bool, generator_steps: int) -> Distiller:
    spec = get_spec("mnist")
    teacher = freeze(create_model("lenet5", num_classes=10, in_channels=1, image_size=32))  # timing only
    cfg = DistillConfig(dataset="mnist", method="rdskd", batch_size=args.batch_size, generator_steps=generator_steps,
                        student_steps=10**6, student_batch_size=args.student_batch_size, sample_pool=4,
                        memory_bank=args.batch_size * 8, augment_shift=3, augment_mixup=1.0, precision=args.precision,
                        channels_last=True, log_every=10**6, device="cpu", eval_teacher=False)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    if compiled:
        engine.generator = torch.compile(engine.generator)
        engine.samples.generator = engine.generator
        engine.student = torch.compile(engine.student)
        engine.method.teacher = torch.compile(engine.method.teacher)  # every step runs the teacher too
    return engine


def timed_steps(engine: Distiller, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        engine.step()
    return (time.perf_counter() - start) / steps


def measure(args, phase: str) -> dict:
    """Seconds per step of `phase` (generator or student) for the eager and the compiled engine."""
    budget = args.rounds * args.steps + args.warmup + 2
    g_steps = budget if phase == "generator" else 1
    engines = {name: make_engine(args, name == "compiled", g_steps) for name in ("eager", "compiled")}
    first = {}
    for name, engine in engines.items():
        if phase == "student":
            engine.step()  # the single generator step
        start = time.perf_counter()
        for _ in range(args.warmup):  # compilation happens here (and the pool is filled, for the student)
            engine.step()
        first[name] = time.perf_counter() - start
    per_step: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            per_step[name].append(timed_steps(engine, args.steps))
    eager, compiled = (statistics.median(per_step[n]) for n in ("eager", "compiled"))
    compile_cost = first["compiled"] - first["eager"]
    saving = eager - compiled
    return {"eager_s": eager, "compiled_s": compiled, "speedup": eager / compiled, "compile_s": compile_cost,
            "break_even_steps": (compile_cost / saving) if saving > 0 else None,
            "rounds": per_step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--student-batch-size", type=int, default=256)
    p.add_argument("--precision", default="auto", choices=["bf16", "fp32", "auto"])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--name", default="compile_speed")
    args = p.parse_args()
    results = {}
    for phase in ("generator", "student"):
        results[phase] = measure(args, phase)
        r = results[phase]
        print(f"{phase}: eager {r['eager_s'] * 1e3:.1f} ms/step, compiled {r['compiled_s'] * 1e3:.1f} ms/step "
              f"(x{r['speedup']:.2f}), compile {r['compile_s']:.1f} s, break-even after "
              f"{r['break_even_steps'] and round(r['break_even_steps'])} steps", flush=True)
    rows = ["| step | eager ms | compiled ms | speedup | compile s | break-even steps |", "|---|---|---|---|---|---|"]
    for phase, r in results.items():
        even = f"{r['break_even_steps']:.0f}" if r["break_even_steps"] is not None else "never"
        rows.append(f"| {phase} | {r['eager_s'] * 1e3:.1f} | {r['compiled_s'] * 1e3:.1f} | x{r['speedup']:.2f} | "
                    f"{r['compile_s']:.1f} | {even} |")
    precision = resolve_precision(args.precision, torch.device("cpu"))
    settings = (f"batch {args.batch_size} (student {args.student_batch_size}), {precision} + channels_last, "
                f"{args.rounds} alternating rounds of {args.steps} steps, medians")
    write_results(args.out_dir, args.name, {"settings": settings, "results": results},
                  f"# torch.compile on this CPU\n\n{settings}.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
