"""Run a sweep on Ray Tune: the sweep folder, the teacher, the Tuner(s), the ledger, the summary.

Robustness mode is one Tune grid over the precomputed (method, point, seed) trials, so pairing is
exact by construction and every trial gets the same budget (no scheduler, no early stopping).
Optimize mode runs one Tuner per method: Optuna TPE (`OptunaSearch`, its study kept in
`optuna.db`) proposes design values, ASHA stops trials whose student training loss `s/total` is
poor at 25/50% of the student's steps (`student_progress`), and the objective is the final
`student_accuracy`.

Resources: a trial with `workers: 0` reserves its `cpus_per_worker`/`gpus_per_worker` and runs the
engine itself; with `workers >= 1` it reserves `trial_cpus` (0.01) while its Train workers reserve
theirs. The number of concurrent trials is capped so that every running trial's Train workers fit
in the cluster at once: a trial can then never wait for CPUs that other trials' workers hold
(the deadlock behind `WorkerGroupStartupTimeoutError`).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from rich.console import Console

from rdskd_dist.adapters.ray_connect import init_ray
from rdskd_dist.adapters.train_failures import describe_error
from rdskd_dist.errors import UserError, one_line
from rdskd_dist.files import atomic_write_json, atomic_write_text, sha256_file
from rdskd_dist.outputs import check_writable_folder
from rdskd_dist.redact import redact
from rdskd_dist.tune.design import robustness_design, trial_config
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.progress import ProgressLine
from rdskd_dist.tune.report import rich_table, summarize, write_summary
from rdskd_dist.tune.spec import SweepSpec, load_spec, spec_yaml
from rdskd_dist.tune.storage import SweepStorage

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
#   run is noticed up to that late, and a worker's report waits for the previous one to be polled.
LOCAL_RAY_ENV = {"RAY_worker_niceness": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                 "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1"}


@dataclass
class SweepOutcome:
    spec: SweepSpec
    folder: SweepFolder
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    complete: bool
    plots: list[Path]


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

def prepare_folder(spec: SweepSpec, resume: bool) -> SweepFolder:
    folder = SweepFolder(spec.sweep_dir)
    if folder.spec_file.is_file():
        saved = load_spec(folder.spec_file)
        mine, theirs = spec.design_dump(), saved.design_dump()
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
                            out=path, **spec.teacher_train.model_dump())
        start = time.perf_counter()
        with console.status(f"training the {spec.base.dataset} teacher ({cfg.epochs} epochs) into {path}"):
            model, accuracy = train_teacher(cfg, log=lambda _msg: None)
        save_teacher(model, path, dataset=spec.base.dataset, test_accuracy=accuracy)
        console.print(f"teacher: {model.spec['name']} on {spec.base.dataset}, test accuracy {accuracy:.2f}%, "
                      f"{time.perf_counter() - start:.0f}s -> {path}", highlight=False)
    base = spec.base.model_copy(update={"teacher": str(path), "teacher_sha256": sha256_file(path)})
    return spec.model_copy(update={"base": base})


# ---------------------------------------------------------------- the Tune callback

def add_launch_time(row: dict[str, Any], tune_started: Optional[float]) -> None:
    """`launch_s` (Tune starts the trial -> the trial's function runs: its actor and imports) and the
    overhead fraction over the whole trial, launch included."""
    if tune_started is None or not isinstance(row.get("started_at"), (int, float)):
        return
    row["launch_s"] = round(max(float(row["started_at"]) - tune_started, 0.0), 3)
    wall, train = row.get("trial_wall_s"), row.get("train_s")
    if isinstance(wall, (int, float)) and isinstance(train, (int, float)) and wall + row["launch_s"] > 0:
        row["overhead_frac"] = round(1.0 - train / (wall + row["launch_s"]), 4)


def timing_summary(rows: list[dict[str, Any]]) -> Optional[str]:
    """One line: the median split of a trial's wall time over the rows that have it (see trainable.timing_columns)."""
    import statistics

    parts = [("launch", "launch_s"), ("startup", "startup_s"), ("setup", "setup_s"), ("train", "train_s"),
             ("eval", "eval_s"), ("finish", "finish_s")]
    timed = [r for r in rows if isinstance(r.get("train_s"), (int, float)) and isinstance(r.get("trial_wall_s"), (int, float))]
    if not timed:
        return None
    med = {key: statistics.median(float(r.get(key) or 0.0) for r in timed) for _, key in parts + [("", "trial_wall_s")]}
    total = med["trial_wall_s"] + med["launch_s"]
    over = statistics.median(float(r.get("overhead_frac") or 0.0) for r in timed)
    split = ", ".join(f"{name} {med[key]:.1f}s" for name, key in parts)
    shares = [float(r["train_cpu_s"]) / float(r["train_s"]) for r in timed
              if isinstance(r.get("train_cpu_s"), (int, float)) and float(r["train_s"]) > 0]
    share = f"; training got {statistics.median(shares):.2f} CPU" if shares else ""
    return (f"trial time (median of {len(timed)}): {split}; total {total:.1f}s, "
            f"{100 * over:.0f}% outside training{share}")


def _define_callback():
    from ray.tune import Callback

    class SweepCallback(Callback):
        """Runs on the Tune driver: writes each finished trial's ledger row, keeps the status line."""

        def __init__(self, folder: SweepFolder, spec: SweepSpec, progress: ProgressLine, ctx: dict[str, Any],
                     storage: Optional[SweepStorage] = None):
            self.folder, self.spec, self.progress, self.ctx, self.storage = folder, spec, progress, ctx, storage
            self.rows: dict[str, dict[str, Any]] = {}
            self.started: dict[str, float] = {}
            self.storage_warned = False

        def __getstate__(self):  # Tune pickles its run config into the experiment state: leave the console out
            return {**self.__dict__, "progress": None}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[trial.trial_id] = time.time()
            if self.progress is not None:
                self.progress.trial_started()

        def on_trial_recover(self, iteration, trials, trial, **info):
            # The trial's process or its Train workers died (a lost node): Tune runs it again (FailureConfig).
            self.rows.pop(trial.trial_id, None)
            if self.progress is not None:
                self.progress.trial_retrying()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "row" in result:
                self.rows[trial.trial_id] = json.loads(result["row"])

        def _fallback(self, trial, status: str, error: str) -> dict[str, Any]:
            """A row for a trial that never sent its closing report (stopped early, or its process died)."""
            config = trial.config
            if "plan" in config:
                plan = config["plan"]
            else:
                plan = {"key": f"{self.ctx['method']}-{trial.trial_id}", "method": self.ctx["method"], "point": None,
                        "seed": self.ctx["seeds"][0], "x": dict(config.get("x") or {})}
            last = trial.last_result or {}
            row = {"sweep": self.spec.name, "mode": self.spec.mode, "key": plan["key"], "method": plan["method"],
                   "point": plan["point"], "seed": plan["seed"], "status": status, "error": error,
                   "trial_id": trial.trial_id, "attempt": self.ctx["attempt"],
                   "started_at": self.started.get(trial.trial_id), "finished_at": time.time(),
                   "iterations": last.get("iteration"), "generator_steps": last.get("g_step"),
                   "student_steps": last.get("s_step"),
                   **{f"mult_{k}": v for k, v in plan["x"].items() if self.spec.space[k].relative}}
            try:
                row.update(trial_config(self.spec.base_for(plan["method"]), plan["method"], plan["seed"], self.spec.space, plan["x"])[1])
            except Exception:  # noqa: BLE001 - an invalid point: the row keeps its design values only
                pass
            return row

        def _finish(self, row: dict[str, Any], trial) -> None:
            row["retries"] = trial.num_failures if self.spec.trial.max_failures else 0
            add_launch_time(row, self.started.get(trial.trial_id))
            self.folder.record(row)
            self.folder.write_parquet(design_columns=[k for k, d in self.spec.space.items() if d.relative])
            self._copy_to_storage(row)
            if self.progress is not None:
                self.progress.trial_finished(row)

        def _copy_to_storage(self, row: dict[str, Any]) -> None:
            """The new ledger row and results.parquet, so that results survive the driver machine."""
            if self.storage is None:
                return
            try:
                self.storage.upload(self.folder.path, [f"ledger/{row['key']}.json", "results.parquet"])
            except Exception as exc:  # noqa: BLE001 - the local ledger stays the source of truth
                if not self.storage_warned:
                    print(f"warning: could not copy results to {redact(self.storage.sweep_uri())}: {one_line(exc)}",
                          file=sys.stderr, flush=True)
                    self.storage_warned = True

        def on_trial_complete(self, iteration, trials, trial, **info):
            row = self.rows.pop(trial.trial_id, None)
            if row is None:
                last = trial.last_result or {}
                if self.spec.mode == "optimize":
                    metric = self.spec.early_stopping.metric
                    row = self._fallback(trial, "stopped", (
                        f"stopped early by ASHA at {100 * float(last.get('student_progress', 0)):.0f}% of the "
                        f"student's steps ({metric}={last.get(metric)})"))
                else:
                    row = self._fallback(trial, "failed", "trial ended without a final report")
            self._finish(row, trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            row = self.rows.pop(trial.trial_id, None)
            if row is None:
                err = trial.get_error()
                row = self._fallback(trial, "failed", describe_error(err) if err is not None else "trial process failed")
            self._finish(row, trial)

    return SweepCallback


# ---------------------------------------------------------------- running

def trial_base(spec: SweepSpec) -> dict[str, Any]:
    """The spec's base block as the trials get it. The teacher is the same in every trial, so trials do not
    evaluate it (`eval_teacher: false`) unless the spec asks: its test accuracy is the one recorded in the
    teacher file (measured once, when the sweep trained it) and `teacher_accuracy` in each row repeats it."""
    base = spec.base.model_dump(mode="json")
    if "eval_teacher" not in spec.base.model_fields_set:
        base["eval_teacher"] = False
    return base


def _context(spec: SweepSpec, folder: SweepFolder, attempt: str, storage: Optional[SweepStorage]) -> dict[str, Any]:
    return {
        "sweep": spec.name, "mode": spec.mode, "sweep_dir": str(folder.path), "attempt": attempt,
        "base": trial_base(spec), "method_base": spec.method_base, "space": {k: d.model_dump() for k, d in spec.space.items()},
        "trial": spec.trial.model_dump(), "seeds": list(spec.seeds),
        "train_storage": storage.sweep_uri("train") if storage is not None else str(folder.path / "train"),
    }


def _trainable(spec: SweepSpec, ctx: dict[str, Any]):
    from ray import tune

    from rdskd_dist.tune.trainable import run_trial

    t = spec.trial
    if t.workers == 0:
        resources = {"cpu": t.cpus_per_worker, **({"gpu": t.gpus_per_worker} if t.gpus_per_worker else {})}
    else:
        resources = {"cpu": t.trial_cpus}
    return tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)


def _run_config(spec: SweepSpec, folder: SweepFolder, attempt: str, callback, name: str, tracking=None,
                storage: Optional[SweepStorage] = None):
    from ray import tune

    where = storage.tune_run_kwargs() if storage is not None else {"storage_path": str(folder.path / "tune")}
    return tune.RunConfig(name=f"{name}-{attempt}", verbose=0,
                          callbacks=[callback] + ([tracking] if tracking is not None else []),
                          # Retries of trials whose process or Train workers died; a trial never raises
                          # for a failed distillation, so these are lost nodes and crashed processes.
                          failure_config=tune.FailureConfig(max_failures=spec.trial.max_failures),
                          log_to_file=True, **where)


def _run_robustness(spec, folder, ctx, todo, concurrent, progress, tracker=None, storage=None) -> None:
    from ray import tune

    Callback = _define_callback()
    tuner = tune.Tuner(
        _trainable(spec, ctx),
        param_space={"plan": tune.grid_search([p.to_dict() for p in todo])},
        # In-process trials reuse their actors (no interpreter + torch start per trial).
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=spec.trial.workers == 0,
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=_run_config(spec, folder, ctx["attempt"], Callback(folder, spec, progress, ctx, storage),
                               "robustness", tracker.callback() if tracker is not None else None, storage),
    )
    tuner.fit()


def _run_optimize(spec, folder, ctx, method, index, count, concurrent, progress, tracker=None, storage=None) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    space = {"x": {name: (CategoricalDistribution(list(d.choices)) if d.choices is not None
                          else FloatDistribution(d.low, d.high, log=d.log)) for name, d in spec.space.items()}}
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder.path / 'optuna.db'}")
    sampler = optuna.samplers.TPESampler(seed=spec.design_seed + index, multivariate=True, constant_liar=True)

    class FinalObjectiveSearch(OptunaSearch):
        """OptunaSearch that skips intermediate results: the objective exists only in a trial's last report."""

        def on_trial_result(self, trial_id, result):
            if self.metric in result:
                super().on_trial_result(trial_id, result)

    search = FinalObjectiveSearch(space, metric=spec.objective.metric, mode=spec.objective.mode, sampler=sampler,
                          storage=storage, study_name=f"{spec.name}-{method}")
    es = spec.early_stopping
    if es.enabled:
        # Rungs strictly below 1: a trial is never stopped at its last report (it is evaluating then).
        scheduler = ASHAScheduler(time_attr="student_progress", metric=es.metric, mode=es.mode, max_t=0.99,
                                  grace_period=min(es.grace_period, 0.5), reduction_factor=es.reduction_factor,
                                  stop_last_trials=False)
    else:
        scheduler = FIFOScheduler()
    Callback = _define_callback()
    ctx = {**ctx, "method": method}
    tuner = tune.Tuner(
        _trainable(spec, ctx),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=count,
                                    max_concurrent_trials=concurrent, reuse_actors=spec.trial.workers == 0,
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=_run_config(spec, folder, ctx["attempt"], Callback(folder, spec, progress, ctx, storage), method,
                               tracker.callback(method) if tracker is not None else None, storage),
    )
    tuner.fit()


def expected_trials(spec: SweepSpec) -> int:
    if spec.mode == "robustness":
        return spec.num_points * len(spec.seeds) * len(spec.methods)
    return spec.num_points * len(spec.methods)


def is_complete(spec: SweepSpec, rows: list[dict[str, Any]]) -> bool:
    if spec.mode == "robustness":
        return {p.key for p in robustness_design(spec)} <= {r["key"] for r in rows}
    return all(sum(r["method"] == m for r in rows) >= spec.num_points for m in spec.methods)


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
    spec = ensure_teacher(spec, folder, console)
    if tracker is not None:
        tracker.start()
    rows = folder.rows()
    done = folder.finished_keys(retry_failed)
    budget = max_trials if max_trials is not None else math.inf
    # What to run now: robustness, the design's trials without a ledger row; optimize, trials per method.
    todo: list = []
    counts: dict[str, int] = {}
    if spec.mode == "robustness":
        design = robustness_design(spec)
        atomic_write_json({"keys": [p.to_dict() for p in design]}, folder.path / "design.json")
        todo = [p for p in design if p.key not in done]
        todo = todo[:budget] if budget != math.inf else todo
    else:
        for method in spec.methods:
            have = sum(1 for r in rows if r["method"] == method and r["key"] in done)
            counts[method] = int(min(max(spec.num_points - have, 0), budget))
            budget -= counts[method]
    started_here = False
    try:
        if todo or any(counts.values()):  # a finished sweep is only reported again: no Ray needed
            started_here = init_ray(address, include_dashboard=False, verbose=verbose, env=TUNE_ENV,
                                    local_env=LOCAL_RAY_ENV)
            _quiet_logs(verbose)
            attempt = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
            ctx = _context(spec, folder, attempt, storage)
            ok_rows = [r for r in rows if r.get("status") == "ok"]
            best = max(((float(r["student_accuracy"]), r["key"]) for r in ok_rows), default=None)
            kept = [r for r in rows if r["key"] in done]
            concurrent = concurrency(spec, console)
            progress = ProgressLine(spec.name, expected_trials(spec), console=console, done=len(kept),
                                    failed=sum(r.get("status") == "failed" for r in kept),
                                    stopped=sum(r.get("status") == "stopped" for r in kept), best=best,
                                    slots=concurrent, to_run=len(todo) + sum(counts.values()))
            with progress:
                if spec.mode == "robustness":
                    _run_robustness(spec, folder, ctx, todo, concurrent, progress, tracker, storage)
                for index, method in enumerate(spec.methods):
                    if not counts.get(method):
                        continue
                    if retry_failed:  # failed ledger files are replaced by the new trials' rows
                        for r in rows:
                            if r["method"] == method and r["key"] not in done:
                                (folder.ledger_dir / f"{r['key']}.json").unlink(missing_ok=True)
                    _run_optimize(spec, folder, ctx, method, index, counts[method], concurrent, progress, tracker,
                                  storage)
    except BaseException:
        if tracker is not None:
            tracker.close("KILLED")
        raise
    finally:
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


def copy_sweep_files(storage: Optional[SweepStorage], folder: SweepFolder, console: Console) -> None:
    if storage is None:
        return
    try:
        storage.upload(folder.path)
    except Exception as exc:  # noqa: BLE001 - the results are complete locally; say where they are
        console.print(f"warning: could not copy the sweep's files to {redact(storage.sweep_uri())}: {one_line(exc)} "
                      f"(they are in {folder.path})", highlight=False)
        return
    console.print(f"copied to storage: {redact(storage.sweep_uri())}", highlight=False)


def report_sweep(spec: SweepSpec, folder: SweepFolder, console: Console, plots: bool = True,
                 storage: Optional[SweepStorage] = None) -> SweepOutcome:
    order = {m: i for i, m in enumerate(spec.methods)}
    rows = sorted(folder.rows(), key=lambda r: (order.get(r["method"], len(order)), -1 if r.get("point") is None else r["point"],
                                                r.get("seed") or 0, r["key"]))
    folder.write_parquet(rows, design_columns=[k for k, d in spec.space.items() if d.relative])
    summary = summarize(rows, spec.methods, spec.reference, spec.mode, spec.name, expected_trials(spec))
    write_summary(summary, folder.path)
    made: list[Path] = []
    if plots and rows:
        from rdskd_dist.tune.plots import make_plots

        made = make_plots(rows, spec, folder.path)
    complete = is_complete(spec, rows)
    console.print(rich_table(summary))
    timing = timing_summary(rows)
    if timing:
        console.print(timing, highlight=False)
    for item in summary["not_scored"]:
        console.print(f"  not scored: {item['key']} ({item['status']}): {item['error']}", highlight=False)
    console.print(f"results: {folder.parquet}  summary: {folder.path / 'summary.md'}"
                  + (f"  plots: {folder.path / 'plots'}" if made else ""), highlight=False)
    copy_sweep_files(storage, folder, console)
    if not complete:
        console.print(f"sweep incomplete: {len(rows)} of {expected_trials(spec)} trials finished; run the same "
                      "command with --resume to finish it", highlight=False)
    return SweepOutcome(spec, folder, rows, summary, complete, made)
