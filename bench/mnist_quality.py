"""MNIST quality: a LeNet-5 teacher on real MNIST, LeNet-5-half students by every method over seeds,
plus two references trained on real data (KD with real data, the student from scratch).

    python bench/mnist_quality.py --data-root ../shared/datasets/mnist --seeds 0 1 2

Writes docs/results/mnist_quality.{json,md}. Students are scored on the test split at the end
of their budget; nothing is selected by test accuracy. `--tiny` runs the same code on the
digits demo with tiny budgets (used by the test suite).
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
from rdskd_dist.data import load_split  # noqa: E402
from rdskd_dist.engine import evaluate_accuracy, run_distillation  # noqa: E402
from rdskd_dist.methods.losses import kd_kl_loss  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teacher import TeacherConfig, train_teacher  # noqa: E402
from rdskd_dist.teachers import load_teacher, save_teacher  # noqa: E402

# Budgets per method (MNIST) sized for the 2-core CPU machines (about 4 minutes a run there at
# batch 128). Two-stage RDSKD: generator steps, then student steps drawing from a pool of the
# frozen generator's samples. DAFL (joint) and DFAD (adversarial) pay a generator step per
# iteration / per 5 student steps, so they get fewer student steps for a similar generator cost.
BUDGETS = {
    "rdskd": dict(generator_steps=400, student_steps=3000, sample_pool=200, lr_decay_at=[0.8]),
    "dafl": dict(student_steps=600),
    "dfad": dict(student_steps=1500, student_steps_per_generator_step=5),
    "dfad_ar_vi": dict(student_steps=1500, student_steps_per_generator_step=5),
}
TINY = {m: dict(generator_steps=4, student_steps=10, student_steps_per_generator_step=5) for m in BUDGETS}


def kd_with_real_data(teacher, train, test, *, epochs: int, seed: int, batch_size: int, temperature: float = 4.0):
    """Upper reference: the student distilled from the teacher on the real training images."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    spec = train.spec
    student = create_model("lenet5_half", num_classes=spec.num_classes, in_channels=spec.channels)
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(train), batch_size):
            x = train.normalized(order[start:start + batch_size])
            with torch.no_grad():
                t = teacher(x)
            loss = kd_kl_loss(student(x), t, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return evaluate_accuracy(student, test, torch.device("cpu"))


def summarize(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/datasets/mnist", help="folder with the MNIST idx files")
    p.add_argument("--teacher", default="runs/teachers/mnist_lenet5.pt", help="teacher checkpoint (trained if absent)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per method")
    p.add_argument("--methods", nargs="+", default=list(BUDGETS), choices=list(BUDGETS), help="methods to run")
    p.add_argument("--batch-size", type=int, default=128, help="generated samples per step")
    p.add_argument("--real-epochs", type=int, default=4, help="epochs of the real-data references")
    p.add_argument("--no-references", action="store_true", help="skip the real-data references")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"), help="where the JSON and Markdown go")
    p.add_argument("--tiny", action="store_true", help="digits demo and tiny budgets (smoke test)")
    args = p.parse_args(argv)

    dataset = "digits" if args.tiny else "mnist"
    budgets = TINY if args.tiny else BUDGETS
    teacher_path = Path(args.teacher)
    started = time.perf_counter()
    if not teacher_path.exists():
        cfg = TeacherConfig(dataset=dataset, data_root=args.data_root, epochs=2 if args.tiny else 8, lr=2e-3,
                            out=teacher_path)
        model, acc = train_teacher(cfg)
        save_teacher(model, teacher_path, dataset=dataset, test_accuracy=acc)
    runs = []
    for method in args.methods:
        for seed in args.seeds:
            cfg = DistillConfig(dataset=dataset, data_root=args.data_root, teacher=str(teacher_path), method=method,
                                seed=seed, batch_size=16 if args.tiny else args.batch_size, precision="bf16",
                                channels_last=True, log_every=10 if args.tiny else 100, **budgets[method])
            result = run_distillation(cfg)
            print(result.line(), flush=True)
            runs.append({"method": method, "seed": seed, "budget": budgets[method], **result.to_dict()})

    references = {}
    if not args.no_references:
        train = load_split(dataset, "train", args.data_root)
        test = load_split(dataset, "test", args.data_root)
        teacher, _ = load_teacher(teacher_path, train.spec)
        epochs = 1 if args.tiny else args.real_epochs
        kd, scratch = [], []
        for seed in args.seeds:
            kd.append(kd_with_real_data(teacher, train, test, epochs=epochs, seed=seed, batch_size=128))
            _, acc = train_teacher(TeacherConfig(dataset=dataset, data_root=args.data_root, arch="lenet5_half",
                                                 epochs=epochs, lr=2e-3, seed=seed), log=lambda _m: None)
            scratch.append(acc)
        references = {"kd_real_data": summarize(kd), "scratch_real_data": summarize(scratch),
                      "real_epochs": epochs}

    per_method = {m: summarize([r["student_accuracy"] for r in runs if r["method"] == m]) for m in args.methods}
    teacher_acc = runs[0]["teacher_accuracy"] if runs else None
    rows = ["| method | budget | student acc. % (mean ± std) | min | max | wall s / run |", "|---|---|---|---|---|---|"]
    for m, s in per_method.items():
        wall = statistics.fmean(r["wall_time_s"] for r in runs if r["method"] == m)
        budget = ", ".join(f"{k}={v}" for k, v in budgets[m].items())
        rows.append(f"| {m} | {budget} | {s['mean']:.2f} ± {s['std']:.2f} | {s['min']:.2f} | {s['max']:.2f} | {wall:.0f} |")
    for name, s in references.items():
        if isinstance(s, dict):
            rows.append(f"| {name} | {references['real_epochs']} epochs of real data | {s['mean']:.2f} ± {s['std']:.2f} "
                        f"| {s['min']:.2f} | {s['max']:.2f} | |")
    md = (f"# MNIST quality: LeNet-5 -> LeNet-5-half ({dataset})\n\nTeacher test accuracy: {teacher_acc:.2f}%. "
          f"Seeds: {args.seeds}. Batch {args.batch_size}, bf16 autocast + channels_last. Accuracy on the test split "
          f"at the end of each budget.\n\n" + "\n".join(rows) + "\n")
    write_results(args.out_dir, "mnist_quality" + ("_tiny" if args.tiny else ""),
                  {"dataset": dataset, "teacher_accuracy": teacher_acc, "seeds": args.seeds, "runs": runs,
                   "summary": per_method, "references": references, "wall_time_s": time.perf_counter() - started},
                  md)
    print(md)


if __name__ == "__main__":
    main()
