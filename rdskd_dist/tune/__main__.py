"""`python -m rdskd_dist.tune`: robustness sweeps and hyperparameter optimisation on Ray Tune.

    python -m rdskd_dist.tune                                   # the quickstart (digits, a few minutes)
    python -m rdskd_dist.tune --spec tune/mnist-robustness.yaml --max-concurrent 4
    python -m rdskd_dist.tune --spec mnist-robustness --resume  # continue a stopped sweep
    python -m rdskd_dist.tune --spec quickstart --generator-steps 100 --name qs-longer
    python -m rdskd_dist.tune --spec mnist-robustness --storage s3://bucket/sweeps   # on a cluster

Distillation options (`--generator-steps`, `--batch-size`, `--lr-generator`, ...) override the
spec's `base` block for every trial.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from rdskd_dist.cli import OneLineParser, add_model_options
from rdskd_dist.config import DistillConfig
from rdskd_dist.errors import UserError, cli_entrypoint
from rdskd_dist.outputs import check_writable_folder
from rdskd_dist.tune.spec import TRIAL_OWNED, SweepSpec, load_spec

REPO_SPECS = Path(__file__).resolve().parents[2] / "tune"
DEFAULT_SPEC = "quickstart"

# command-line option -> spec key (dotted keys live in nested blocks)
SPEC_OPTIONS = {
    "name": "name", "output": "output", "mode": "mode", "methods": "methods", "seeds": "seeds",
    "num_points": "num_points", "design_seed": "design_seed", "max_concurrent": "max_concurrent",
    "trial_workers": "trial.workers", "cpus_per_worker": "trial.cpus_per_worker",
    "gpus_per_worker": "trial.gpus_per_worker", "reference_method": "reference_method", "storage": "storage",
    "max_failures": "trial.max_failures",
}


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m rdskd_dist.tune", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="Distillation options below override the spec's base block for every trial.")
    s = p.add_argument_group("sweep")
    s.add_argument("--spec", metavar="FILE", help=f"sweep spec (YAML), or the name of one in tune/ "
                                                  f"(default: {DEFAULT_SPEC}; with --resume: the sweep folder's own)")
    s.add_argument("--name", help="sweep name (its folder under --output)")
    s.add_argument("--output", metavar="DIR", help="parent folder of sweep folders (spec default: sweeps)")
    s.add_argument("--storage", metavar="URI", help="where Tune's and Ray Train's run state (checkpoints) live and "
                                                    "the sweep's results are copied: s3://..., gs://..., file:///... "
                                                    "or a path; every node must reach it (default: the sweep folder)")
    s.add_argument("--resume", action="store_true", help="continue the sweep in its folder: finished trials are not run again")
    s.add_argument("--retry-failed", action="store_true", help="with --resume: run failed (and early-stopped) trials again")
    s.add_argument("--report-only", action="store_true", help="only rebuild the summary and plots of an existing sweep")
    s.add_argument("--mode", choices=["robustness", "optimize"])
    s.add_argument("--methods", nargs="+", metavar="METHOD")
    s.add_argument("--seeds", nargs="+", type=int, metavar="SEED")
    s.add_argument("--num-points", type=int, metavar="N", help="robustness: Sobol points; optimize: trials per method")
    s.add_argument("--design-seed", type=int, metavar="N")
    s.add_argument("--reference-method", metavar="METHOD", help="paired differences against this method (rdskd)")
    s.add_argument("--max-concurrent", type=int, metavar="N", help="trials at a time (capped to what the cluster fits)")
    s.add_argument("--max-trials", type=int, metavar="N", help="start at most N trials in this invocation")
    s.add_argument("--trial-workers", type=int, metavar="N", help="Ray Train workers per trial (0: in the trial's process)")
    s.add_argument("--max-failures", type=int, metavar="N", help="Tune retries of a trial whose process or workers "
                                                              "died (a lost node); resumes from its checkpoint")
    s.add_argument("--cpus-per-worker", type=float, metavar="X")
    s.add_argument("--gpus-per-worker", type=float, metavar="X")
    s.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    s.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    s.add_argument("--verbose", action="store_true", help="show Ray's and the trials' logs")
    s.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking server or store (default: "
                                                         "$MLFLOW_TRACKING_URI, else sqlite ./mlflow.db)")
    s.add_argument("--no-tracking", dest="tracking", action="store_false", help="do not log the sweep to MLflow")
    d = p.add_argument_group("distillation options (override the spec's base block)")
    add_model_options(d, DistillConfig, skip=set(TRIAL_OWNED))
    return p


def find_spec_file(value: str) -> Path:
    path = Path(value)
    if path.is_file():
        return path
    for folder in (Path.cwd() / "tune", REPO_SPECS):
        for candidate in (folder / value, folder / f"{value}.yaml"):
            if candidate.is_file():
                return candidate
    raise UserError(f"spec file not found: {value} (looked in ., ./tune and {REPO_SPECS})")


def resolve_spec(args: dict[str, Any], base_overrides: dict[str, Any]) -> SweepSpec:
    overrides = {SPEC_OPTIONS[k]: v for k, v in args.items() if k in SPEC_OPTIONS and v is not None}
    spec_arg: Optional[str] = args.get("spec")
    if spec_arg is None and (args["resume"] or args["report_only"]):
        # The sweep folder's own spec: --name (default: the quickstart's) under --output (default: sweeps).
        name = args.get("name") or DEFAULT_SPEC
        if args.get("name") is None and args.get("output") is None:
            default = load_spec(find_spec_file(DEFAULT_SPEC))
            saved = default.sweep_dir / "spec.yaml"
        else:
            saved = Path(args.get("output") or "sweeps").resolve() / name / "spec.yaml"
        if saved.is_file():
            return load_spec(saved, overrides, base_overrides)
        if args["report_only"]:
            raise UserError(f"no sweep at {saved.parent} (pass --spec/--name/--output of an existing sweep)")
    return load_spec(find_spec_file(spec_arg or DEFAULT_SPEC), overrides, base_overrides)


@cli_entrypoint
def main(argv: Optional[list[str]] = None) -> int:
    ns = vars(build_parser().parse_args(argv))
    # DistillConfig options given on the command line (their defaults are suppressed); --output is the sweep's
    base_overrides = {k: ns.pop(k) for k in list(ns) if k in DistillConfig.model_fields and k not in TRIAL_OWNED}
    from rdskd_dist.tracking import resolve_teacher_uri, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(ns["tracking_uri"]) if ns["tracking"] else None  # fails fast
    if ns["address"] and not ns["report_only"]:  # fails fast too: ray.init retries a dead address for minutes
        from rdskd_dist.adapters.ray_connect import check_ray_address

        check_ray_address(ns["address"])
    if str(base_overrides.get("teacher", "")).startswith("models:/"):  # a registered teacher
        base_overrides["teacher"] = resolve_teacher_uri(base_overrides["teacher"], ns["tracking_uri"])
    spec = resolve_spec(ns, base_overrides)
    if ns["max_trials"] is not None and ns["max_trials"] < 1:
        raise UserError("--max-trials must be at least 1")
    if ns["retry_failed"] and not ns["resume"]:
        raise UserError("--retry-failed goes with --resume")
    check_writable_folder(spec.sweep_dir, "output folder")  # before Ray, the teacher or MLflow: nothing is created

    from rdskd_dist.tune.ledger import SweepFolder
    from rdskd_dist.tune.sweep import default_console, report_sweep, run_sweep

    console = default_console()
    if ns["report_only"]:
        from rdskd_dist.tune.storage import SweepStorage

        storage = SweepStorage(spec.storage, spec.name) if spec.storage else None
        outcome = report_sweep(spec, SweepFolder(spec.sweep_dir), console, plots=ns["plots"], storage=storage)
    else:
        from rdskd_dist.tracking import SweepTracker

        tracker = SweepTracker.for_spec(spec, tracking_uri, resume=ns["resume"]) if tracking_uri else None
        outcome = run_sweep(spec, resume=ns["resume"], retry_failed=ns["retry_failed"], max_trials=ns["max_trials"],
                            console=console, verbose=ns["verbose"], plots=ns["plots"], address=ns["address"],
                            tracker=tracker)
    return 0 if outcome.complete or ns["max_trials"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
