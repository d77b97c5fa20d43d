"""CIFAR-10 on a GPU: a ResNet-34 teacher, then ResNet-18 students with time-to-accuracy curves.

    python bench/cifar10_gpu.py --data-root ../shared/datasets/cifar10 --teacher-epochs 200 \
        --methods dfad_ar_vi rdskd --student-steps 50000

Or, on a lent GPU with a fixed allowance (the budgets are wall-clock seconds of training, turned into
epochs and steps by short timing probes on the same device before each stage):

    python bench/cifar10_gpu.py --teacher-budget-s 190 --student-budget-s 130

Writes docs/results/cifar10_gpu.{json,md}, after each stage (a run cut short keeps what finished).
The teacher is trained once (SGD, nesterov, one-cycle, random crops and flips) unless `--teacher`
already exists. Every `--eval-every` student steps the
student is scored on the test split to draw the curve (accuracy against training time): the curve
is monitoring only; the reported accuracy is the one at the end of the budget. `--tiny` runs the
same code on tiny budgets and batches (the test suite runs it on generated CIFAR-shaped files).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec, load_split  # noqa: E402
from rdskd_dist.engine import evaluate_accuracy, run_distillation, schedule_steps  # noqa: E402
from rdskd_dist.engine.precision import resolve_precision  # noqa: E402
from rdskd_dist.engine.run import resolve_device  # noqa: E402
from rdskd_dist.engine.resolve import resolve_config  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teacher_training import TeacherConfig, train_teacher  # noqa: E402
from rdskd_dist.teachers import save_teacher  # noqa: E402

# Per-method settings on top of the method's CIFAR-10 reference settings (which the methods declare:
# optimisers, learning rates, lr decay points, steps per generator step; see --print-config).
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "rdskd": dict(sample_pool=0), "dafl": {}, "dfad": {}, "dfad_ar_vi": {},
}


def reference(method: str) -> DistillConfig:
    return resolve_config(DistillConfig(dataset="cifar10", method=method), get_spec("cifar10"))


class Curve:
    """Scores the student from each checkpoint the engine hands over (its time is not training time)."""

    def __init__(self, test_data, device: torch.device, precision: str, eval_every: int, student_steps: int):
        self.test_data, self.device, self.precision = test_data, device, precision
        self.eval_every, self.student_steps = eval_every, student_steps
        self.points: list[dict[str, float]] = []
        self._student: torch.nn.Module | None = None

    def __call__(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        step = int(metrics["s_step"])
        if checkpoint is None or step == 0 or (step % self.eval_every and step != self.student_steps):
            return
        if self._student is None:
            spec = get_spec("cifar10")
            self._student = create_model(checkpoint["config"]["student"], num_classes=spec.num_classes,
                                         in_channels=spec.channels, image_size=spec.image_size)
            self._student.to(self.device, memory_format=torch.channels_last)
        self._student.load_state_dict(checkpoint["student"])
        acc = evaluate_accuracy(self._student, self.test_data, self.device, precision=self.precision,
                                channels_last=True)
        self.points.append({"student_step": step, "train_time_s": metrics["train_time_s"],
                            "test_accuracy": acc})
        print(f"  step S{step}: {acc:.2f}% after {metrics['train_time_s']:.0f}s", flush=True)


def report_interval(method: str, generator_steps: int, eval_every: int, n: int) -> int:
    """Loop iterations between reports such that every `eval_every`-th student step gets one."""
    schedule = reference(method).schedule
    if schedule == "two_stage":  # iterations count the generator steps first
        return math.gcd(generator_steps, eval_every)
    if schedule == "adversarial":  # n student steps per iteration
        return eval_every // n
    return eval_every


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_teacher_epoch_s(batch_size: int, device: torch.device, precision: str, steps: int = 20) -> float:
    """Seconds per CIFAR-10 epoch of ResNet-34 training, timed on random batches after a warm-up."""
    import torch.nn.functional as F

    from rdskd_dist.engine.precision import autocast

    spec = get_spec("cifar10")
    model = create_model("resnet34", num_classes=10, in_channels=3, image_size=spec.image_size)
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch_size, 3, spec.image_size, spec.image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=device)
    for i in range(steps + 5):
        if i == 5:
            _sync(device)
            start = time.perf_counter()
        with autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return (time.perf_counter() - start) / steps * math.ceil(50000 / batch_size)


class StepTimer:
    """Report callback of a probe run: (generator steps, student steps, training seconds) at each report."""

    def __init__(self) -> None:
        self.points: list[tuple[int, int, float]] = []

    def __call__(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        self.points.append((int(metrics["g_step"]), int(metrics["s_step"]), float(metrics["train_time_s"])))

    def seconds_per_step(self, generator_stage: bool) -> float:
        """Slope over the probe's reports of one stage, leaving out the first (warm-up) interval."""
        pts = [p for p in self.points if (p[1] == 0) == generator_stage]
        if len(pts) < 3:
            raise RuntimeError(f"timing probe gave too few reports: {self.points}")
        (g0, s0, t0), (g1, s1, t1) = pts[1], pts[-1]
        steps = (g1 - g0) if generator_stage else (s1 - s0)
        return (t1 - t0) / max(steps, 1)


def steps_for_budget(cfg: DistillConfig, budget_s: float, generator_share: float, unit: int) -> tuple[int, int]:
    """(generator_steps, student_steps) that fill `budget_s` of training, from a short probe run on `cfg`."""
    ref = reference(cfg.method)
    timer = StepTimer()
    if ref.schedule == "two_stage":
        probe = cfg.model_copy(update=dict(generator_steps=40, student_steps=40, log_every=10, checkpoint_every=0,
                                           eval_teacher=False))
        run_distillation(probe, on_report=timer)
        g_s, s_s = timer.seconds_per_step(True), timer.seconds_per_step(False)
        generator_steps = max(unit, int(budget_s * generator_share / g_s) // unit * unit)
        student_steps = max(unit, int(budget_s * (1 - generator_share) / s_s) // unit * unit)
        print(f"  probe: {g_s * 1e3:.1f} ms per generator step, {s_s * 1e3:.1f} ms per student step", flush=True)
        return generator_steps, student_steps
    n = ref.student_steps_per_generator_step if ref.schedule == "adversarial" else 1
    probe = cfg.model_copy(update=dict(student_steps=40 * n, log_every=10, checkpoint_every=0, eval_teacher=False))
    run_distillation(probe, on_report=timer)
    per_iteration = timer.seconds_per_step(False) * n
    print(f"  probe: {per_iteration * 1e3:.1f} ms per iteration ({n} student steps)", flush=True)
    return cfg.generator_steps, max(unit, int(budget_s / per_iteration) * n // unit * unit)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/datasets/cifar10", help="folder with cifar-10-batches-bin")
    p.add_argument("--teacher", default="runs/teachers/cifar10_resnet34.pt", help="teacher (trained if absent)")
    p.add_argument("--teacher-epochs", type=int, default=200)
    p.add_argument("--teacher-batch-size", type=int, default=256)
    p.add_argument("--methods", nargs="+", default=["dfad_ar_vi", "rdskd"], choices=list(METHOD_OPTIONS))
    p.add_argument("--generator-steps", type=int, default=2400, help="RDSKD stage 1")
    p.add_argument("--student-steps", type=int, default=50000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-every", type=int, default=2500, help="student steps between curve points")
    p.add_argument("--teacher-budget-s", type=float, default=None,
                   help="train the teacher for as many epochs as fit in this many seconds (timed by a probe; "
                        "replaces --teacher-epochs)")
    p.add_argument("--student-budget-s", type=float, default=None,
                   help="per method: as many steps as fit in this many seconds of training (timed by a probe run; "
                        "replaces --generator-steps and --student-steps; curve points every tenth of the budget)")
    p.add_argument("--generator-share", type=float, default=0.3,
                   help="two-stage methods under --student-budget-s: share of the budget for the generator stage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--tiny", action="store_true", help="tiny budgets and batches (smoke test, any device)")
    args = p.parse_args(argv)

    started = time.perf_counter()
    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)  # bf16 on the GPU; fp32 on a CPU that would emulate it (--tiny)
    name = "cifar10_gpu" + ("_tiny" if args.tiny else "")
    teacher_path = Path(args.teacher)
    teacher_run: dict[str, Any] = {}
    if not teacher_path.exists():
        batch = 16 if args.tiny else args.teacher_batch_size
        epochs = 1 if args.tiny else args.teacher_epochs
        if args.teacher_budget_s is not None:
            epoch_s = probe_teacher_epoch_s(batch, device, precision)
            epochs = max(1, int(args.teacher_budget_s / (epoch_s * 1.1)))  # 10%: crops, epoch ends
            print(f"teacher probe: {epoch_s:.1f} s per epoch -> {epochs} epochs", flush=True)
        tcfg = TeacherConfig(dataset="cifar10", data_root=args.data_root, arch="resnet34", out=teacher_path,
                             epochs=epochs, batch_size=batch, lr=0.1, optimizer="sgd", weight_decay=5e-4,
                             precision=precision, channels_last=True, device=args.device, seed=args.seed)
        t0 = time.perf_counter()
        model, acc = train_teacher(tcfg)
        save_teacher(model, teacher_path, dataset="cifar10", test_accuracy=acc)
        teacher_run = {"epochs": epochs, "batch_size": batch, "train_s": time.perf_counter() - t0,
                       "test_accuracy": acc}
        print(f"teacher: ResNet-34 {acc:.2f}% after {epochs} epochs in {teacher_run['train_s']:.0f}s", flush=True)
        write_results(args.out_dir, name, {"teacher": teacher_run, "runs": [],
                                           "wall_time_s": time.perf_counter() - started}, "(teacher only so far)\n")
    test_data = load_split("cifar10", "test", args.data_root)

    runs = []
    for method in args.methods:
        options = dict(METHOD_OPTIONS[method])
        n = reference(method).student_steps_per_generator_step if reference(method).schedule == "adversarial" else 1
        eval_every = max(n, (args.eval_every // n) * n)
        generator_steps = 2 if args.tiny else args.generator_steps
        student_steps = 2 * eval_every if args.tiny else args.student_steps
        base = DistillConfig(dataset="cifar10", data_root=args.data_root, teacher=str(teacher_path), method=method,
                             generator_steps=generator_steps, student_steps=student_steps,
                             batch_size=8 if args.tiny else args.batch_size, precision=precision, channels_last=True,
                             seed=args.seed, device=args.device, **options)
        if args.student_budget_s is not None:
            unit = 10 * n  # round budgets so that curve points and reports fall on whole intervals
            generator_steps, student_steps = steps_for_budget(base, args.student_budget_s, args.generator_share, unit)
            eval_every = max(unit, student_steps // 10 // unit * unit)
            student_steps = student_steps // eval_every * eval_every
            generator_steps = max(eval_every, generator_steps // eval_every * eval_every)
        report_every = report_interval(method, generator_steps, eval_every, n)
        cfg = DistillConfig.model_validate({**base.model_dump(), "generator_steps": generator_steps,
                                            "student_steps": student_steps, "log_every": report_every,
                                            "checkpoint_every": report_every})
        _, g_steps, s_steps = schedule_steps(resolve_config(cfg, get_spec("cifar10")))
        print(f"{method}: G{g_steps}/S{s_steps}, batch {cfg.batch_size}", flush=True)
        curve = Curve(test_data, device, precision, eval_every, cfg.student_steps)
        result = run_distillation(cfg, on_report=curve)
        print(result.line(), flush=True)
        runs.append({"method": method, "config": cfg.model_dump(mode="json"), "curve": curve.points,
                     **result.to_dict()})
        write_results(args.out_dir, name, {"teacher": teacher_run, "runs": runs,
                                           "wall_time_s": time.perf_counter() - started}, "(in progress)\n")

    rows = ["| method | steps | student acc. % (end of budget) | training time s | samples/s | "
            "first curve point >= 94% |", "|---|---|---|---|---|---|"]
    for r in runs:
        hit = next((f"{pt['train_time_s']:.0f}s (S{int(pt['student_step'])})" for pt in r["curve"]
                    if pt["test_accuracy"] >= 94.0), "not reached")
        rows.append(f"| {r['method']} | G{r['generator_steps']}/S{r['student_steps']} | {r['student_accuracy']:.2f} "
                    f"| {r['train_time_s']:.0f} | {r['samples_per_s']:.0f} | {hit} |")
    teacher_acc = runs[0]["teacher_accuracy"] if runs else None
    trained = (f" Trained here: {teacher_run['epochs']} epochs at batch {teacher_run['batch_size']} in "
               f"{teacher_run['train_s']:.0f} s." if teacher_run else "")
    md = (f"# CIFAR-10: ResNet-34 -> ResNet-18 ({'tiny smoke run' if args.tiny else 'GPU'})\n\n"
          f"Teacher test accuracy: {teacher_acc:.2f}%.{trained} {precision} + channels_last. The curve points are "
          f"test accuracy during training (monitoring, not selection).\n\n" + "\n".join(rows) + "\n")
    write_results(args.out_dir, name, {"teacher": teacher_run, "teacher_accuracy": teacher_acc, "runs": runs,
                                       "wall_time_s": time.perf_counter() - started}, md)
    print(md)


if __name__ == "__main__":
    main()
