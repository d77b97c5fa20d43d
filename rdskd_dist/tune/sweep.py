"""Run a sweep on Ray Tune: the sweep folder, the teacher, one Tuner per run its mode plans, the report.

What a mode runs (a robustness grid, or per-method Optuna searches) is in `tune/modes/`; the Tune
callback that writes each trial's ledger row is `tune/callback.py`; the summary is `tune/report.py`.

Resources: a trial with `workers: 0` reserves its `cpus_per_worker`/`gpus_per_worker` and runs the
engine itself; with `workers >= 1` it reserves `trial_cpus` (0.01) while its Train workers reserve
theirs. The number of concurrent trials is capped so that every running trial's Train workers fit
in the cluster at once: a trial can then never wait for CPUs that other trials' workers hold
(the deadlock behind `WorkerGroupStartupTimeoutError`).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from rich.console import Console

from rdskd_dist.adapters.ray_connect import PG_CLEANER_ENV, init_ray
from rdskd_dist.errors import UserError
from rdskd_dist.files import atomic_write_text, sha256_file
from rdskd_dist.outputs import check_writable_folder
from rdskd_dist.redact import redact
from rdskd_dist.tune.context import TrialContext
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.modes import TunerRun, mode_of
from rdskd_dist.tune.progress import ProgressLine
from rdskd_dist.tune.report import SweepOutcome, report_sweep
from rdskd_dist.tune.spec import SweepSpec, load_spec, spec_yaml
from rdskd_dist.tune.storage import SweepStorage

__all__ = ["SweepOutcome", "default_console", "report_sweep", "run_sweep"]

TUNE_ENV = {  # quiet Tune defaults, on top of ray_connect.QUIET_ENV
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # paths are absolute anyway; keep trials in the driver's folder
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # the objective only exists in a trial's closing report
    "RAY_AIR_NEW_OUTPUT": "0",
}
# For a Ray that the sweep starts itself (the variables reach its raylet and workers):
# * a local Ray starts its worker processes at nice 15 (to keep its own services responsive). The trials'
#   Train workers do all of a sweep's work: at nice 15 anything else on the machine (a build, a browser,
#   another benchmark) takes the CPU from them, which made quickstart trials run several times slower;
# * Ray Train's preemption watcher (one more actor process per trial) reacts to cloud nodes being
#   preempted; a local Ray has none. A trial whose worker dies is still retried (trial.max_failures) and
#   resumes from its checkpoint;
# * Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s): a finished
#   run is noticed up to that late, and a worker's report waits for the previous one to be polled;
# * the local Ray has no dashboard (about 2 s less at start), so no state API: Ray Train's placement-group
#   cleaner (one more actor process per trial) could not see its controller die and only logs warnings.
LOCAL_RAY_ENV = {"RAY_worker_niceness": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                 "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1", PG_CLEANER_ENV: "0"}


# ---------------------------------------------------------------- ray

def _quiet_logs(verbose: bool) -> None:
    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.air", "optuna"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
        except ImportError:  # pragma: no cover
            pass


def concurrency(spec: SweepSpec, console: Console) -> int:
    """`max_concurrent`, lowered so that all running trials and their Train workers fit at once."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = spec.trial.per_trial()
    cap = spec.max_concurrent
    have_cpu = float(resources.get("CPU", 0))
    cap = min(cap, math.floor(have_cpu / cpus + 1e-6))
    if gpus > 0:
        cap = min(cap, math.floor(float(resources.get("GPU", 0)) / gpus + 1e-6))
    if cap < 1:
        raise UserError(f"one trial needs {cpus:g} CPUs and {gpus:g} GPUs (trial plus {spec.trial.workers} workers) but "
                        f"the Ray cluster has {have_cpu:g} CPUs and {float(resources.get('GPU', 0)):g} GPUs")
    if cap < spec.max_concurrent:
        console.print(f"note: {cap} trials at a time (not {spec.max_concurrent}): each holds {cpus:g} CPUs"
                      + (f" and {gpus:g} GPUs" if gpus else "") + f" and the cluster has {have_cpu:g} CPUs",
                      highlight=False)
    return cap


# ---------------------------------------------------------------- folder and teacher

def extends_design(saved: SweepSpec, spec: SweepSpec) -> bool:
    """A robustness design with at least the saved points, seeds and methods. A Sobol design of N points is
    the first N points of a longer one with the same seed, and a method's trials do not depend on the other
    methods, so every finished trial keeps its key and values: a sweep run in part on a small machine grows
    on a cluster with --resume --num-points N (or --methods with one more)."""
    return (saved.mode == spec.mode == "robustness" and spec.num_points >= saved.num_points
            and set(saved.seeds) <= set(spec.seeds) and set(saved.methods) <= set(spec.methods))


def prepare_folder(spec: SweepSpec, resume: bool) -> SweepFolder:
    folder = SweepFolder(spec.sweep_dir)
    if folder.spec_file.is_file():
        saved = load_spec(folder.spec_file)
        mine, theirs = spec.design_dump(), saved.design_dump()
        if resume and extends_design(saved, spec):  # more points, seeds or methods: finished trials stay valid
            mine = {**mine, "num_points": saved.num_points, "seeds": saved.seeds, "methods": saved.methods,
                    "method_base": {m: v for m, v in mine["method_base"].items() if m in saved.methods}}
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise UserError(f"sweep folder {folder.path} holds a different sweep (differs in: {', '.join(diff)}); "
                            "use another --name or --output")
        finished = len(folder.rows())
        if finished and not resume:
            raise UserError(f"sweep folder {folder.path} already has {finished} finished trials: pass --resume to "
                            "continue it (or to report it again), or use another --name")
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_yaml(spec), folder.spec_file)
    return folder


def ensure_teacher(spec: SweepSpec, folder: SweepFolder, console: Console) -> SweepSpec:
    """The spec with base.teacher set: the given file, or one trained once into the sweep folder."""
    if spec.teacher_train is None:
        return spec
    path = folder.path / "teacher.pt"
    if not path.is_file():
        from rdskd_dist.teacher_training import TeacherConfig, train_teacher
        from rdskd_dist.teachers import save_teacher

        cfg = TeacherConfig(dataset=spec.base.dataset, data_root=spec.base.data_root, download=spec.base.download,
                            image_size=spec.base.image_size, out=path, **spec.teacher_train.model_dump())
        start = time.perf_counter()
        with console.status(f"training the {spec.base.dataset} teacher ({cfg.epochs} epochs) into {path}"):
            model, accuracy = train_teacher(cfg, log=lambda _msg: None)
        save_teacher(model, path, dataset=spec.base.dataset, test_accuracy=accuracy)
        console.print(f"teacher: {model.spec['name']} on {spec.base.dataset}, test accuracy {accuracy:.2f}%, "
                      f"{time.perf_counter() - start:.0f}s -> {path}", highlight=False)
    base = spec.base.model_copy(update={"teacher": str(path), "teacher_sha256": sha256_file(path)})
    return spec.model_copy(update={"base": base})


# ---------------------------------------------------------------- running

def _run_tuner(ctx: TrialContext, run: TunerRun, folder: SweepFolder, concurrent: int, progress: ProgressLine,
               tracker=None, storage: Optional[SweepStorage] = None, shared=None) -> None:
    from ray import tune

    from rdskd_dist.tune.callback import SweepCallback
    from rdskd_dist.tune.trainable import run_trial

    spec, t = ctx.spec, ctx.spec.trial
    args = mode_of(spec).tune_arguments(spec, folder, run)
    resources = ({"cpu": t.cpus_per_worker, **({"gpu": t.gpus_per_worker} if t.gpus_per_worker else {})}
                 if t.workers == 0 else {"cpu": t.trial_cpus})
    callbacks = [SweepCallback(folder, ctx, progress, storage, shared)]
    if tracker is not None:
        callbacks.append(tracker.callback(run.method))
    where = storage.tune_run_kwargs() if storage is not None else {"storage_path": str(folder.path / "tune")}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources),
        param_space=args.param_space,
        # Trials reuse their actors: no interpreter, Ray Tune and torch start per trial (~5 s of CPU each), and
        # the next trial starts as soon as a slot frees. Train workers are still new processes per trial.
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True,
                                    trial_dirname_creator=lambda trial: trial.trial_id, **args.tune_config),
        run_config=tune.RunConfig(name=f"{run.name}-{ctx.attempt}", verbose=0, callbacks=callbacks,
                                  # Retries of trials whose process or Train workers died; a trial never raises
                                  # for a failed distillation, so these are lost nodes and crashed processes.
                                  failure_config=tune.FailureConfig(max_failures=t.max_failures),
                                  log_to_file=True, **where),
    )
    tuner.fit()


def default_console() -> Console:
    """stdout; when it is not a terminal (logs, pipes), wide enough for the table's one line per method."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def run_sweep(spec: SweepSpec, *, resume: bool = False, retry_failed: bool = False, max_trials: Optional[int] = None,
              console: Optional[Console] = None, verbose: bool = False, plots: bool = True,
              address: Optional[str] = None, tracker=None) -> SweepOutcome:
    """Run (or continue) a sweep and report it. Finished trials (ledger files) are never run again;
    with `retry_failed` the failed and stopped ones are. `max_trials` caps the trials started now.
    `tracker` (a `rdskd_dist.tracking.SweepTracker`) records the sweep and its trials in MLflow."""
    console = console or default_console()
    check_writable_folder(spec.sweep_dir, "output folder")  # a one-line error before Ray or any trial
    storage = open_storage(spec, resume, console)
    folder = prepare_folder(spec, resume)
    rows = folder.rows()
    done = folder.finished_keys(retry_failed)
    mode = mode_of(spec)
    runs = mode.plan(spec, folder, rows, done, max_trials if max_trials is not None else math.inf)
    started_here = False
    background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sweep-start")
    tracking = None
    try:
        # The teacher (if the spec trains one) trains and MLflow opens its store (imports, schema check) on
        # background threads while Ray starts: seconds each, much of it waiting on other processes or in
        # torch's kernels, which release the GIL.
        teacher = background.submit(ensure_teacher, spec, folder, console)
        if tracker is not None:
            tracking = background.submit(tracker.start)
        if runs:  # a finished sweep is only reported again: no Ray needed
            started_here = init_ray(address, include_dashboard=False, verbose=verbose, env=TUNE_ENV,
                                    local_env=LOCAL_RAY_ENV)
            _quiet_logs(verbose)
        if tracking is not None:
            tracking.result()
        spec = teacher.result()
        if runs:
            attempt = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
            train_storage = storage.sweep_uri("train") if storage is not None else str(folder.path / "train")
            best = spec.objective.best(rows)
            # the line counts trials that run: not the rows that repeat another trial's result (mode.shared)
            shared = mode.shared(spec)
            kept = [r for r in rows if r["key"] in done and not r.get("same_as")]
            concurrent = concurrency(spec, console)
            progress = ProgressLine(spec.name, mode.expected_trials(spec) - sum(map(len, shared.values())),
                                    console=console, done=len(kept),
                                    failed=sum(r.get("status") == "failed" for r in kept),
                                    stopped=sum(r.get("status") == "stopped" for r in kept),
                                    best=None if best is None else (spec.objective.value(best), best["key"]),
                                    slots=concurrent, to_run=sum(run.trials for run in runs), score=spec.objective)
            with progress:
                for run in runs:
                    for key in run.replaces:  # failed ledger files are replaced by the new trials' rows
                        (folder.ledger_dir / f"{key}.json").unlink(missing_ok=True)
                    ctx = TrialContext(spec, attempt, train_storage, method=run.method)
                    _run_tuner(ctx, run, folder, concurrent, progress, tracker, storage, shared)
    except BaseException:
        if tracker is not None:
            if tracking is not None:
                futures.wait([tracking])  # the parent run exists (or failed to) before it is closed
            tracker.close("KILLED")
        raise
    finally:
        background.shutdown(wait=True)  # a teacher still training after an error elsewhere finishes first
        if started_here:
            import ray

            ray.shutdown()
    outcome = report_sweep(spec, folder, console, plots=plots, storage=storage)
    if tracker is not None:
        tracker.finish(folder.parquet, [folder.path / "summary.json", folder.path / "summary.md"], folder.path / "plots",
                       extra_files=[folder.spec_file])
    return outcome


def open_storage(spec: SweepSpec, resume: bool, console: Console) -> Optional[SweepStorage]:
    """The sweep's storage, checked writable before anything runs; on --resume, the ledger it holds is
    pulled into a missing local sweep folder (a new driver machine)."""
    if spec.storage is None:
        return None
    storage = SweepStorage(spec.storage, spec.name)
    storage.check_writable()
    if resume:
        copied = storage.download_missing(spec.sweep_dir)
        if copied:
            console.print(f"resume: copied {', '.join(copied)} from {redact(storage.sweep_uri())} into {spec.sweep_dir}",
                          highlight=False)
    return storage
