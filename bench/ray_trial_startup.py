"""Ray's fixed cost per Tune trial that fits a Ray Train run, apart from this engine.

    python bench/ray_trial_startup.py --repeats 2

Each run starts a fresh local Ray (2 CPUs, no dashboard, as `python -m rdskd_dist.tune` does) in a child
process and runs two Tune trials side by side; each trial fits a one-worker trainer whose loop only
multiplies matrices for `--busy-s` seconds. The figure is a trial's startup: trial function entered ->
the Train worker's loop entered (the Train controller, its helper actors and the worker: process starts,
imports, placement group, process group), as the quickstart's `startup_s` column measures it. Variants:

* `ray`: Ray's own `TorchTrainer` with all its default callbacks;
* `lean`: the adapter's `LeanTorchTrainer` (no dataset manager for a run without Ray Datasets);
* `lean_nopg`: the same with `RDSKD_TRAIN_PG_CLEANER=0` (no placement-group cleaner), as the sweep's local Ray;
* `lean_nopg_notorch`: the same with the adapter's `LeanTorchConfig` (Ray's torch backend options from a module
  without torch, so the Train controller does not import torch), as the adapter builds it.

The variants alternate within one invocation, so compare them with each other, not across machines.
Writes docs/results/<--name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

VARIANTS = ("ray", "lean", "lean_nopg", "lean_nopg_notorch")


def busy_loop(config: dict) -> None:
    import torch
    import ray.train

    entered = time.time()
    x = torch.randn(256, 256)
    while time.time() - entered < config["busy_s"]:
        x = (x @ x).tanh()
    Path(config["out"]).write_text(json.dumps({"startup_s": entered - config["started"]}))
    ray.train.report({"entered": entered})


def one_run(variant: str, busy_s: float, folder: Path) -> list[float]:
    """In this (child) process: a fresh Ray, two concurrent trials; their startup seconds."""
    from ray import tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from rdskd_dist.adapters.ray_connect import PG_CLEANER_ENV, connect_ray
    from rdskd_dist.adapters.ray_train.driver import LeanTorchTrainer
    from rdskd_dist.adapters.torch_backend import LeanTorchConfig

    if variant.startswith("lean_nopg"):
        os.environ[PG_CLEANER_ENV] = "0"  # before Ray starts: its workers inherit it
    trainer_cls = TorchTrainer if variant == "ray" else LeanTorchTrainer
    backend = {"torch_config": LeanTorchConfig()} if variant == "lean_nopg_notorch" else {}
    connect_ray(num_cpus=2, log_to_driver=False)

    def trial(config: dict) -> None:
        started = time.time()
        out = folder / f"trial{config['i']}.json"
        trainer = trainer_cls(busy_loop, train_loop_config={"busy_s": busy_s, "started": started, "out": str(out)},
                              scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.99}),
                              run_config=RunConfig(name=f"t{config['i']}", storage_path=str(folder / "train"),
                                                   callbacks=[TuneReportCallback()]), **backend)
        trainer.fit()
        tune.report({"wall_s": time.time() - started})

    tune.Tuner(tune.with_resources(trial, {"CPU": 0.01}), param_space={"i": tune.grid_search([0, 1])},
               tune_config=tune.TuneConfig(max_concurrent_trials=2),
               run_config=tune.RunConfig(storage_path=str(folder / "tune"), name="startup", verbose=0)).fit()
    return [json.loads((folder / f"trial{i}.json").read_text())["startup_s"] for i in (0, 1)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--repeats", type=int, default=2, help="runs of each variant, alternating")
    p.add_argument("--busy-s", type=float, default=15.0)
    p.add_argument("--name", default="ray_trial_startup")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one run in this process
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.one, args.busy_s, Path(args.folder))))
        return
    startups: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.repeats):
        for variant in args.variants:
            with tempfile.TemporaryDirectory() as folder:
                proc = subprocess.run([sys.executable, __file__, "--one", variant, "--busy-s", str(args.busy_s),
                                       "--folder", folder], capture_output=True, text=True, timeout=600)
                if proc.returncode:
                    raise SystemExit(f"{variant} failed: {proc.stderr.strip().splitlines()[-1:]}")
                startups[variant].extend(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(variant, [round(s, 2) for s in startups[variant]], flush=True)
    rows = [f"| `{v}` | {len(s)} | {statistics.mean(s):.2f} | {min(s):.2f} | {max(s):.2f} |" for v, s in startups.items()]
    table = "\n".join(["| variant | trials | startup s, mean | min | max |", "|---|---|---|---|---|", *rows])
    write_results(args.out_dir, args.name, {"busy_s": args.busy_s, "repeats": args.repeats, "startup_s": startups},
                  f"# {args.name}: a Tune trial's Ray Train startup, two trials at a time\n\n{table}\n")


if __name__ == "__main__":
    main()
