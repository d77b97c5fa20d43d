"""MNIST quality: a LeNet-5 teacher on real MNIST, LeNet-5-half students by every method over seeds,
plus two references trained on real data (KD with real data, the student from scratch).

    python bench/mnist_quality.py --data-root ../shared/datasets/mnist --seeds 0 1 2

Writes docs/results/mnist_quality.{json,md}. Students are scored on the test split at the end
of their budget; nothing is selected by test accuracy. `--tiny` runs the same code on the
digits demo with tiny budgets (used by the test suite).
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
from common import write_results  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import load_split  # noqa: E402
from rdskd_dist.engine import evaluate_accuracy, run_distillation  # noqa: E402
from rdskd_dist.files import sha256_file  # noqa: E402
from rdskd_dist.methods.losses import kd_kl_loss  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teacher_training import TeacherConfig, train_teacher  # noqa: E402
from rdskd_dist.teachers import load_teacher, save_teacher  # noqa: E402

# Budgets per method (MNIST) sized for the 2-core CPU machines (about 4 minutes a run there at
# batch 128). Two-stage RDSKD: generator steps, then student steps drawing from a pool of the
# frozen generator's samples. DAFL (joint) and DFAD (adversarial) pay a generator step per
# iteration / per 5 student steps, so they get fewer student steps for a similar generator cost.
BUDGETS = {
    "rdskd": dict(generator_steps=400, student_steps=3000, sample_pool=200, lr_decay_at=[0.8]),
    "dafl": dict(student_steps=600),
    "dfad": dict(student_steps=1000, student_steps_per_generator_step=5),
    "dfad_ar_vi": dict(student_steps=1000, student_steps_per_generator_step=5),
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
    p.add_argument("--resume", action="store_true", help="keep the runs already in the JSON (same settings)")
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
    name = "mnist_quality" + ("_tiny" if args.tiny else "")
    batch = 16 if args.tiny else args.batch_size
    real_epochs = 1 if args.tiny else args.real_epochs
    settings = {"dataset": dataset, "batch_size": batch, "budgets": {m: budgets[m] for m in args.methods},
                "real_epochs": real_epochs, "teacher_sha256": sha256_file(teacher_path)}
    runs = previous_runs(args.out_dir / f"{name}.json", settings) if args.resume else []
    real = None
    # seed-major order: an interrupted run still has every method on the first seeds
    for seed in args.seeds:
        for method in [*args.methods, *([] if args.no_references else REFERENCES)]:
            if any(r["method"] == method and r["seed"] == seed for r in runs):
                continue
            if method in REFERENCES:
                real = real or real_data(dataset, args.data_root, teacher_path)
                acc, wall = reference_run(method, real, args.data_root, seed, real_epochs)
                runs.append({"method": method, "seed": seed, "student_accuracy": acc, "wall_time_s": wall})
                print(f"result: {method} seed={seed} student_acc={acc:.2f}% wall={wall:.1f}s", flush=True)
            else:
                cfg = DistillConfig(dataset=dataset, data_root=args.data_root, teacher=str(teacher_path),
                                    method=method, seed=seed, batch_size=batch, precision="auto", channels_last=True,
                                    log_every=10 if args.tiny else 100, **budgets[method])
                result = run_distillation(cfg)
                print(result.line(), flush=True)
                runs.append({"method": method, "seed": seed, "budget": budgets[method], **result.to_dict()})
            write_tables(args, name, settings, runs, time.perf_counter() - started)


REFERENCES = ("kd_real_data", "scratch_real_data")


def previous_runs(path: Path, settings: dict) -> list[dict]:
    """Runs of an earlier (interrupted) invocation with the same settings, to skip."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if data.get("settings") != json.loads(json.dumps(settings)):
        raise SystemExit(f"error: {path} was made with other settings; move it away or drop --resume")
    return data["runs"]


def real_data(dataset: str, root, teacher_path: Path):
    train = load_split(dataset, "train", root)
    test = load_split(dataset, "test", root)
    return train, test, load_teacher(teacher_path, train.spec)[0]


def reference_run(kind: str, real, root, seed: int, epochs: int) -> tuple[float, float]:
    train, test, teacher = real
    start = time.perf_counter()
    if kind == "kd_real_data":
        acc = kd_with_real_data(teacher, train, test, epochs=epochs, seed=seed, batch_size=128)
    else:
        _, acc = train_teacher(TeacherConfig(dataset=train.spec.name, data_root=root, arch="lenet5_half",
                                             epochs=epochs, lr=2e-3, seed=seed), log=lambda _m: None)
    return acc, time.perf_counter() - start


def write_tables(args, name: str, settings: dict, runs: list[dict], wall: float) -> None:
    """The JSON and Markdown, rewritten after every run (marked incomplete until all are in)."""
    methods = [*args.methods, *([] if args.no_references else REFERENCES)]
    expected = len(methods) * len(args.seeds)
    complete = len(runs) == expected
    summary = {m: summarize([r["student_accuracy"] for r in runs if r["method"] == m])
               for m in methods if any(r["method"] == m for r in runs)}
    teacher_acc = next((r["teacher_accuracy"] for r in runs if r.get("teacher_accuracy") is not None), None)
    rows = ["| method | budget | seeds | student acc. % (mean ± std) | min | max | wall s / run |",
            "|---|---|---|---|---|---|---|"]
    for m, s in summary.items():
        mine = [r for r in runs if r["method"] == m]
        budget = (f"{settings['real_epochs']} epochs of real data" if m in REFERENCES
                  else ", ".join(f"{k}={v}" for k, v in settings["budgets"][m].items()))
        rows.append(f"| {m} | {budget} | {', '.join(str(r['seed']) for r in mine)} | {s['mean']:.2f} ± {s['std']:.2f} "
                    f"| {s['min']:.2f} | {s['max']:.2f} | {statistics.fmean(r['wall_time_s'] for r in mine):.0f} |")
    status = "" if complete else f"**Incomplete: {len(runs)} of {expected} runs so far** (rerun with `--resume`).\n\n"
    teacher_line = f"Teacher test accuracy: {teacher_acc:.2f}%. " if teacher_acc is not None else ""
    md = (f"# MNIST quality: LeNet-5 -> LeNet-5-half ({settings['dataset']})\n\n{status}{teacher_line}"
          f"Seeds: {args.seeds}. Batch {settings['batch_size']}, bf16 autocast + channels_last. Accuracy on the test "
          f"split at the end of each budget (no checkpoint selection).\n\n" + "\n".join(rows) + "\n")
    write_results(args.out_dir, name, {"settings": settings, "complete": complete, "teacher_accuracy": teacher_acc,
                                       "seeds": args.seeds, "runs": runs, "summary": summary, "wall_time_s": wall}, md)
    if complete:
        print(md)


if __name__ == "__main__":
    main()
