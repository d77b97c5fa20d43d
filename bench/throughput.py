"""Throughput: samples/s of one distillation config in this process, on 1 Ray Train worker and on 2.

    python bench/throughput.py                      # digits, batch 256, auto precision + channels_last
    python bench/throughput.py --dataset mnist --data-root ../shared/datasets/mnist
    python bench/throughput.py --repeats 2          # interleave the three modes twice

Writes docs/results/throughput.{json,md}. All three modes run the same engine on the same config
(digits, RDSKD two-stage, untrained LeNet-5 teacher: the cost is the same as a trained one's), in
one invocation, in the order in-process, Ray x1, Ray x2 (per repeat).

Threads: in-process uses `--threads` torch threads (default: all cores). One Ray worker reserves
`--threads` CPUs (`cpus_per_worker`), so it runs that many torch threads too (the adapter calls
`torch.set_num_threads(cpus_per_worker)`; Ray would set OMP_NUM_THREADS to the same). Two
workers get `--threads / 2` CPUs and threads each. Per-worker batch is `--batch-size`, so two
workers process twice the samples per step (effective batch x2).

Measured: steady-state samples/s from the engine's own per-report counters (samples consumed by
training steps / training time, Ray startup, evaluation and checkpoint I/O excluded), skipping the
first report interval of each stage (warm-up). Reports are `--log-every` steps apart; a Ray
worker's report waits until the controller has polled the previous one, so this script sets
RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.5 (Ray's default is 2 s) and reports stay more than 0.5 s
apart. Wall time (with Ray startup) is reported alongside.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
# Ray Train's controller polls each worker's one-slot report queue every 2 s by default, and a
# worker's next report waits for that poll: poll every 0.5 s so reports never stall a worker here.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# Ray starts its worker processes at nice 15 (so its own services stay responsive): on a machine
# that runs anything else, that would pit a niced Ray worker against a normal-priority in-process run.
os.environ.setdefault("RAY_worker_niceness", "0")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from rdskd_dist.adapters.ray_connect import init_ray  # noqa: E402
from rdskd_dist.adapters.ray_train import ReportLog, ScaleConfig, read_report_log, train_on_ray  # noqa: E402
from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec  # noqa: E402
from rdskd_dist.engine import run_distillation  # noqa: E402
from rdskd_dist.engine.precision import resolve_precision  # noqa: E402
from rdskd_dist.models import create_model  # noqa: E402
from rdskd_dist.teachers import save_teacher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


PHASES = ("generator", "teacher", "student")


def steady_rates(reports: list[dict[str, Any]], cfg: DistillConfig, world_size: int) -> dict[str, float]:
    """samples/s per stage and overall, and ms per step of generator/teacher/student work per stage,
    from consecutive reports, first interval of each stage skipped (warm-up)."""
    per_step = cfg.batch_size * world_size  # one batch per iteration in either stage
    rows = sorted((r for r in reports if "iteration" in r), key=lambda r: r["iteration"])
    stages: dict[str, list[dict[str, Any]]] = {"g": [], "s": []}
    prev_it, prev_t = 0, 0.0
    for r in rows:
        stage = "g" if r["iteration"] <= cfg.generator_steps else "s"
        stages[stage].append({"steps": r["iteration"] - prev_it, "seconds": r["train_time_s"] - prev_t,
                              **{p: r.get(f"time/{p}_s", 0.0) for p in PHASES}})
        prev_it, prev_t = r["iteration"], r["train_time_s"]
    out, total_n, total_t = {}, 0, 0.0
    for stage, intervals in stages.items():
        kept = intervals[1:] or intervals
        steps, t = sum(i["steps"] for i in kept), sum(i["seconds"] for i in kept)
        out[f"{stage}_stage_samples_per_s"] = steps * per_step / t
        out[f"{stage}_stage_ms_per_step"] = 1000 * t / steps
        for phase in PHASES:
            out[f"{stage}_stage_{phase}_ms_per_step"] = 1000 * sum(i[phase] for i in kept) / steps
        total_n, total_t = total_n + steps * per_step, total_t + t
    out["samples_per_s"] = total_n / total_t
    return out


def run_mode(mode: str, cfg: DistillConfig, threads: int, storage: Path) -> dict[str, Any]:
    start = time.perf_counter()
    if mode == "in_process":
        torch.set_num_threads(threads)
        reports: list[dict[str, Any]] = []
        result = run_distillation(cfg, on_report=lambda m, _c: reports.append(m)).to_dict()
        workers, cpus = 0, threads
    else:
        workers = 1 if mode == "ray_1" else 2
        cpus = max(1, threads // workers)
        log = storage / f"{mode}-{time.time_ns()}.jsonl"
        scale = ScaleConfig(workers=workers, cpus_per_worker=cpus, storage=str(storage),
                            run_name=f"{mode}-{time.time_ns()}")
        result = train_on_ray(cfg, scale, callbacks=[ReportLog(log)])
        reports = read_report_log(log)
    wall = time.perf_counter() - start
    return {"mode": mode, "workers": workers, "threads_per_worker": cpus, "wall_s": wall,
            "train_time_s": result["train_time_s"], "end_to_end_samples_per_s": result["samples_per_s"],
            **steady_rates(reports, cfg, result["world_size"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="shapes and test split (digits: bundled, no files)")
    parser.add_argument("--data-root", default=None, help="dataset folder (e.g. ../shared/datasets/mnist)")
    parser.add_argument("--batch-size", type=int, default=256, help="per-worker batch")
    parser.add_argument("--generator-steps", type=int, default=24)
    parser.add_argument("--student-steps", type=int, default=48)
    parser.add_argument("--log-every", type=int, default=8)
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sample-pool", type=int, default=0, help="two-stage sample pool (0: fresh samples)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPUs in all (Ray gets these)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three modes, interleaved")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--name", default="throughput")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rdskd-throughput-"))
    try:
        spec = get_spec(args.dataset)
        torch.manual_seed(0)
        teacher = create_model(spec.teacher_arch, num_classes=spec.num_classes, in_channels=spec.channels,
                               image_size=spec.image_size)
        save_teacher(teacher, work / "teacher.pt", dataset=args.dataset, test_accuracy=0.0)
        cfg = DistillConfig(dataset=args.dataset, data_root=args.data_root, teacher=str(work / "teacher.pt"),
                            method="rdskd",
                            generator_steps=args.generator_steps, student_steps=args.student_steps,
                            batch_size=args.batch_size, log_every=args.log_every, precision=args.precision,
                            channels_last=args.channels_last, sample_pool=args.sample_pool, device="cpu",
                            eval_teacher=False, seed=0, time_phases=True)
        load_before = os.getloadavg()
        runs = []
        started_ray = False
        for _ in range(args.repeats):
            for mode in ("in_process", "ray_1", "ray_2"):
                if mode != "in_process" and not started_ray:
                    started_ray = init_ray(num_cpus=args.threads, include_dashboard=False)
                runs.append(run_mode(mode, cfg, args.threads, work))
                r = runs[-1]
                print(f"{mode}: {r['samples_per_s']:.0f} samples/s steady (G {r['g_stage_samples_per_s']:.0f}, "
                      f"S {r['s_stage_samples_per_s']:.0f}), wall {r['wall_s']:.1f}s", flush=True)
        load_after = os.getloadavg()
        if started_ray:
            import ray

            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary: dict[str, dict[str, float]] = {}
    for mode in ("in_process", "ray_1", "ray_2"):
        mine = [r for r in runs if r["mode"] == mode]
        keys = [k for k in mine[0] if k.endswith(("samples_per_s", "ms_per_step")) or k == "wall_s"]
        summary[mode] = {k: statistics.mean(r[k] for r in mine) for k in keys}
    base = summary["in_process"]["samples_per_s"]
    for mode in summary:
        summary[mode]["vs_in_process"] = summary[mode]["samples_per_s"] / base

    rows = ["| mode | workers x threads | samples/s (steady) | G stage | S stage | vs in-process | wall s |",
            "|---|---|---|---|---|---|---|"]
    for mode, label in (("in_process", "in-process"), ("ray_1", "Ray Train, 1 worker"), ("ray_2", "Ray Train, 2 workers")):
        s = summary[mode]
        r = next(r for r in runs if r["mode"] == mode)
        shape = f"1 x {r['threads_per_worker']}" if mode == "in_process" else f"{r['workers']} x {r['threads_per_worker']}"
        rows.append(f"| {label} | {shape} | {s['samples_per_s']:.0f} | {s['g_stage_samples_per_s']:.0f} | "
                    f"{s['s_stage_samples_per_s']:.0f} | {s['vs_in_process']:.3f}x | {s['wall_s']:.1f} |")
    rows += ["", "Time per step (ms, per worker) and its split into generator, teacher and student work "
             "(`--time-phases`):", "",
             "| mode | G stage: step | generator | teacher | student | S stage: step | generator | teacher | student |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode, label in (("in_process", "in-process"), ("ray_1", "Ray Train, 1 worker"), ("ray_2", "Ray Train, 2 workers")):
        s = summary[mode]
        cells = [f"{s[f'{st}_stage_{k}']:.1f}" for st in ("g", "s") for k in
                 ("ms_per_step", *(f"{p}_ms_per_step" for p in PHASES))]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    notes = (f"\n\nConfig: {cfg.dataset}, rdskd two-stage, G{cfg.generator_steps}/S{cfg.student_steps}, per-worker batch "
             f"{cfg.batch_size}, {resolve_precision(cfg.precision, torch.device('cpu'))}, "
             f"channels_last={cfg.channels_last}, sample_pool={cfg.sample_pool}, "
             f"log_every={cfg.log_every}, repeats={args.repeats}. Load average before/after: "
             f"{load_before[0]:.1f}/{load_after[0]:.1f} (other processes on the machine skew the figures).\n")
    print(table + notes, flush=True)
    write_results(args.out_dir, args.name, {
        "config": cfg.model_dump(mode="json"), "threads": args.threads, "repeats": args.repeats,
        "loadavg_before": load_before, "loadavg_after": load_after, "runs": runs, "summary": summary,
        "ratio_ray1_vs_in_process": summary["ray_1"]["vs_in_process"],
        "ratio_ray2_vs_in_process": summary["ray_2"]["vs_in_process"],
    }, table + notes)


if __name__ == "__main__":
    main()
