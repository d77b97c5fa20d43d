"""The Ray Train adapter on a real local Ray (2 CPUs), no mocks.

The session's local Ray (`local_ray` in conftest.py) and one module-scoped teacher; tiny budgets
(G4/S6 at batch 32 on digits) so the whole module stays around two minutes on two cores.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# Ray Train's controller takes one report per poll and a worker's report waits for the previous
# one to be taken: poll every 0.25 s rather than every 2 s (log_every=1 here).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")

import pytest

from rdskd_dist.adapters.ray_train import (
    CRASH_ENV,
    CRASH_MARKER,
    ENGINE_FILE,
    ReportLog,
    ScaleConfig,
    build_trainer,
    dedupe_reports,
    read_report_log,
    train_on_ray,
)
from rdskd_dist.config import DistillConfig
from rdskd_dist.engine import run_distillation
from rdskd_dist.files import safe_torch_load
from rdskd_dist.train import TrainJobConfig, main as train_main

ray = pytest.importorskip("ray")

BUDGET = dict(generator_steps=4, student_steps=6)  # two-stage: 10 iterations
# The train CLI logs to MLflow by default (when the tracking option exists): not these tests' subject.
NO_TRACKING = ["--no-tracking"] if "tracking" in TrainJobConfig.model_fields else []
ITERATIONS = list(range(1, 11))


def loss_terms(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if "/" in k}


def checkpoint_folders(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()]


def assert_same_losses(a: list[dict], b: list[dict], rel: float = 1e-5) -> None:
    assert [m["iteration"] for m in a] == [m["iteration"] for m in b]
    for x, y in zip(a, b):
        tx, ty = loss_terms(x), loss_terms(y)
        assert tx.keys() == ty.keys() and tx, (x, y)
        for key in tx:
            assert math.isclose(tx[key], ty[key], rel_tol=rel, abs_tol=1e-6), (x["iteration"], key, tx[key], ty[key])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    from rdskd_dist.teacher_training import TeacherConfig, train_teacher
    from rdskd_dist.teachers import save_teacher

    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    model, accuracy = train_teacher(TeacherConfig(dataset="digits", epochs=3, out=out), log=lambda _: None)
    save_teacher(model, out, dataset="digits", test_accuracy=accuracy)
    return out


def distill_config(teacher: Path, **overrides) -> DistillConfig:
    values = dict(dataset="digits", teacher=str(teacher), batch_size=32, log_every=1, checkpoint_every=2,
                  seed=0, device="cpu", eval_batch_size=512, **BUDGET)
    return DistillConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def two_workers(teacher, local_ray, tmp_path_factory):
    """The reference 2-worker run (no failure); test 3 compares the crashed run with it."""
    storage = tmp_path_factory.mktemp("two_workers")
    log = storage / "reports.jsonl"
    scale = ScaleConfig(workers=2, cpus_per_worker=1, storage=str(storage), run_name="two")
    result = train_on_ray(distill_config(teacher), scale, callbacks=[ReportLog(log)])
    return result, read_report_log(log, dedupe=False), storage / "two"


# ---------------------------------------------------------------- fast checks, no Ray

def test_dedupe_reports_drops_the_failed_attempts_redone_steps():
    raw = [{"iteration": i} for i in (1, 2, 3)] + [{"iteration": i} for i in (3, 4, 5)] + [{"done": 1}]
    assert [r.get("iteration") for r in dedupe_reports(raw)] == [1, 2, 3, 4, 5, None]
    raw = [{"iteration": i} for i in (2, 4, 6)] + [{"iteration": i} for i in (4, 6, 8)]  # resumed from 2
    assert [r["iteration"] for r in dedupe_reports(raw)] == [2, 4, 6, 8]


def test_trainer_leaves_out_the_dataset_manager_and_only_on_request_the_placement_group_cleaner(
        teacher, tmp_path, monkeypatch):
    """Ray's default Train callbacks, less the ones whose actor would idle: no Ray Datasets here -> no
    dataset manager; PG_CLEANER_ENV=0 (a Ray without the state API) -> no placement-group cleaner."""
    from rdskd_dist.adapters.ray_train.driver import PG_CLEANER_ENV, LeanTorchTrainer

    def callbacks(trainer) -> set[str]:
        return {type(c).__name__ for c in trainer._create_default_callbacks()}

    trainer = build_trainer(distill_config(teacher), ScaleConfig(workers=1, cpus_per_worker=1, storage=str(tmp_path)))
    monkeypatch.delenv(PG_CLEANER_ENV, raising=False)
    kept = callbacks(trainer)
    assert "DatasetsCallback" not in kept
    assert {"BackendSetupCallback", "PlacementGroupCleanerCallback", "UserCallbackHandler"} <= kept
    monkeypatch.setenv(PG_CLEANER_ENV, "0")
    assert callbacks(trainer) == kept - {"PlacementGroupCleanerCallback"}
    with_datasets = LeanTorchTrainer(lambda: None, datasets={"train": lambda: None})
    assert "DatasetsCallback" in callbacks(with_datasets)  # a trainer given datasets keeps Ray's


def test_the_train_controller_loads_what_it_is_sent_without_importing_torch(teacher, tmp_path):
    """What a trial sends its Train controller (a new process per run: the default callbacks with the torch
    backend, the run context, the sweep's report callback) unpickles in a fresh interpreter without torch."""
    import ray.cloudpickle as cloudpickle

    from rdskd_dist.adapters.torch_backend import LeanTorchBackend
    from rdskd_dist.adapters.tune_report import SweepReportCallback

    trainer = build_trainer(distill_config(teacher), ScaleConfig(workers=2, cpus_per_worker=1, storage=str(tmp_path)))
    callbacks = trainer._create_default_callbacks()
    assert any(isinstance(getattr(c, "_backend", None), LeanTorchBackend) for c in callbacks)
    sent = tmp_path / "sent.pkl"
    sent.write_bytes(cloudpickle.dumps({"callbacks": callbacks, "context": trainer.train_run_context,
                                        "report_callback": SweepReportCallback}))
    probe = ("import pickle, sys; import ray.train.v2._internal.execution.controller; "
             f"pickle.loads(open({str(sent)!r}, 'rb').read()); print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("resources, options, lean", [
    ({"CPU": 1}, {}, True),
    ({"CPU": 1}, {"backend": "gloo"}, True),
    ({"CPU": 1, "GPU": 1}, {}, False),        # nccl: Ray's own backend
    ({"CPU": 1}, {"init_method": "tcp"}, False),
    ({"CPU": 1}, {"backend": "nccl"}, False),
])
def test_only_cpu_gloo_env_setups_skip_rays_torch_backend(resources, options, lean):
    """Narrow unit test: which process-group setups the lean backend makes itself (the rest go to Ray's)."""
    from rdskd_dist.adapters.torch_backend import LeanTorchBackend, LeanTorchConfig

    class Group:  # the one call the decision makes on Ray's worker group
        def get_resources_per_worker(self):
            return resources

    assert LeanTorchBackend._is_cpu_gloo(Group(), LeanTorchConfig(**options)) is lean
    assert LeanTorchConfig(**options).to_ray_config().to_dict() == {"backend": None, "init_method": "env",
                                                                     "timeout_s": 1800, **options}


@pytest.mark.parametrize("argv, message", [
    (["--workers", "-1"], "workers: Input should be greater than or equal to 0"),
    (["--workers", "2", "--checkpoint", "x.pt"], "--checkpoint is for in-process runs"),
    (["--workers", "1", "--gpus-per-worker", "1", "--device", "cpu"], "--device cpu with --gpus-per-worker"),
    (["--workers", "1", "--cpus-per-worker", "0"], "cpus_per_worker: Input should be greater than 0"),
    (["--workers", "2"], "teacher file not found"),  # checked before any Ray work starts
])
def test_cli_rejects_bad_scale_options_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(["--teacher", "t.pt", *NO_TRACKING, *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ---------------------------------------------------------------- real Ray runs

def test_two_cpu_workers_complete_with_outputs(two_workers):
    result, reports, run_dir = two_workers
    assert result["done"] == 1 and result["world_size"] == 2
    assert 0.0 <= result["student_accuracy"] <= 100.0 and result["teacher_accuracy"] > 20.0
    assert (result["iterations"], result["generator_steps"], result["student_steps"]) == (10, 4, 6)
    assert [r["iteration"] for r in reports if "iteration" in r] == ITERATIONS  # no restart, no duplicate
    assert reports[-1]["done"] == 1 and reports[-1]["checkpoint"]
    for name in ("student.pt", "result.json"):  # in the run folder and in the final checkpoint
        assert (run_dir / name).is_file() and (Path(result["checkpoint"]) / name).is_file()
    student = safe_torch_load(run_dir / "student.pt", "student")
    assert student["format"] == "rdskd-student/1" and student["arch"]["name"] == result["student_arch"]
    # A finished run keeps one checkpoint, its outputs without the engine state (nothing left to resume).
    assert checkpoint_folders(run_dir) == [Path(result["checkpoint"]).name]
    assert not (Path(result["checkpoint"]) / ENGINE_FILE).exists()
    assert (Path(result["checkpoint"]) / "generator.pt").is_file()


def test_a_finished_run_started_again_reports_its_result_without_training(teacher, two_workers, tmp_path):
    first, _, run_dir = two_workers
    log = tmp_path / "again.jsonl"
    scale = ScaleConfig(workers=2, cpus_per_worker=1, storage=str(run_dir.parent), run_name=run_dir.name)
    again = train_on_ray(distill_config(teacher), scale, callbacks=[ReportLog(log)])
    assert [r for r in read_report_log(log, dedupe=False) if "iteration" in r] == []  # no step trained
    assert again["done"] == 1 and again["student_accuracy"] == first["student_accuracy"]
    assert again["train_time_s"] == first["train_time_s"]
    assert checkpoint_folders(run_dir) == [Path(again["checkpoint"]).name] and (Path(again["checkpoint"]) / "student.pt").is_file()


def test_one_ray_worker_matches_the_in_process_engine(teacher, local_ray, tmp_path):
    cfg = distill_config(teacher)
    in_process: list[dict] = []
    reference = run_distillation(cfg, on_report=lambda m, _ckpt: in_process.append(m))

    log = tmp_path / "reports.jsonl"
    scale = ScaleConfig(workers=1, cpus_per_worker=2, storage=str(tmp_path), run_name="one")  # 2 threads, as here
    result = train_on_ray(cfg, scale, callbacks=[ReportLog(log)])
    on_ray = [r for r in read_report_log(log) if "iteration" in r]

    assert len(in_process) == 10
    assert_same_losses(in_process, on_ray)
    assert result["world_size"] == 1
    assert result["student_accuracy"] == pytest.approx(reference.student_accuracy, abs=1e-9)


@ray.remote(num_cpus=0)
class _TrialLikeActor:
    """A long-lived actor that fits a trainer, as a Tune trial does."""

    def fit(self, cfg_json: str, storage: str, in_process: bool) -> dict:
        from ray.train.v2._internal.execution.controller import TrainController

        ran_in: list[int] = []
        original = TrainController.run

        async def recording_run(controller):  # patched in this process only: an actor process imports the original
            ran_in.append(os.getpid())
            return await original(controller)

        TrainController.run = recording_run
        try:
            cfg = DistillConfig.model_validate_json(cfg_json)
            result = build_trainer(cfg, ScaleConfig(workers=1, cpus_per_worker=1), run_name=f"here-{in_process}",
                                   storage=storage, controller_in_process=in_process).fit()
        finally:
            TrainController.run = original
        return {"ran_in": ran_in, "pid": os.getpid(), "metrics": dict(result.metrics or {})}


def test_the_controller_runs_in_the_calling_actor_when_asked_with_the_same_run(teacher, local_ray, tmp_path):
    """`controller_in_process`: Ray Train's controller loop runs in the actor that calls fit (a Tune trial's
    process), not in a process of its own; the run is the same, and its workers are gone after fit. In a driver
    (not an actor) the usual controller actor runs."""
    cfg = distill_config(teacher)
    holder = _TrialLikeActor.remote()
    here = ray.get(holder.fit.remote(cfg.model_dump_json(), str(tmp_path), True))
    apart = ray.get(holder.fit.remote(cfg.model_dump_json(), str(tmp_path), False))
    assert here["ran_in"] == [here["pid"]] and apart["ran_in"] == []
    assert here["metrics"]["done"] == 1 and apart["metrics"]["done"] == 1
    assert here["metrics"]["student_accuracy"] == pytest.approx(apart["metrics"]["student_accuracy"], abs=1e-9)
    deadline = time.time() + 20  # the placement group is removed asynchronously
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(ray.cluster_resources()["CPU"])  # workers gone
    ray.kill(holder)
    from rdskd_dist.adapters.ray_train.driver import run_controller_here

    assert run_controller_here({}) is None  # in this driver process: not an actor


def test_worker_crash_resumes_from_checkpoint_without_losing_or_repeating_steps(
        teacher, local_ray, two_workers, tmp_path, monkeypatch):
    # Rank 1 dies at iteration 6 (stage 2) after reports 1-5; the last checkpoint is at 4, the end of
    # stage 1, so the resumed run must restore each rank's own state (noise, frozen generator's BN).
    monkeypatch.setenv(CRASH_ENV, "6")
    log = tmp_path / "reports.jsonl"
    scale = ScaleConfig(workers=2, cpus_per_worker=1, storage=str(tmp_path), run_name="crash", max_failures=1)
    result = train_on_ray(distill_config(teacher), scale, callbacks=[ReportLog(log)])

    assert (tmp_path / "crash" / CRASH_MARKER).is_file()  # the crash did fire
    raw = [r["iteration"] for r in read_report_log(log, dedupe=False) if "iteration" in r]
    assert raw == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]  # step 5 redone after resuming from step 4
    # Exactly the requested steps: the final counters equal the budget ...
    assert (result["iterations"], result["generator_steps"], result["student_steps"]) == (10, 4, 6)
    # ... and each step reported once after dropping the failed attempt's redone report.
    reports = [r for r in read_report_log(log) if "iteration" in r]
    assert [r["iteration"] for r in reports] == ITERATIONS
    assert [(r["g_step"], r["s_step"]) for r in reports] == [(min(i, 4), max(0, i - 4)) for i in ITERATIONS]
    # The checkpointed history (what a resumed run carries forward) agrees.
    saved = json.loads((Path(result["checkpoint"]) / "history.json").read_text())
    assert [m["iteration"] for m in saved] == ITERATIONS
    # Resuming is exact: the same losses and accuracy as the run that never failed.
    reference, reference_reports, _ = two_workers
    assert_same_losses([r for r in reference_reports if "iteration" in r], reports)
    assert result["student_accuracy"] == pytest.approx(reference["student_accuracy"], abs=1e-9)


def test_cli_runs_two_workers_from_yaml_and_flags(teacher, local_ray, tmp_path):
    (tmp_path / "job.yaml").write_text(
        f"dataset: digits\nteacher: {teacher}\nworkers: 2\ncpus_per_worker: 1\n"
        f"generator_steps: 4\nstudent_steps: 6\nbatch_size: 32\nlog_every: 2\n")
    env = {**os.environ, "RAY_ADDRESS": local_ray}  # join the test's Ray instead of starting one
    env.pop(CRASH_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "rdskd_dist.train", "--config", str(tmp_path / "job.yaml"),
         "--storage", str(tmp_path / "runs"), "--run-name", "cli", "--output", str(tmp_path / "out"), *NO_TRACKING],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("result: ")]
    assert len(lines) == 1, proc.stdout[-3000:]
    assert "workers=2" in lines[0] and "steps=G4/S6" in lines[0] and "student_acc=" in lines[0]
    assert (tmp_path / "out" / "student.pt").is_file() and (tmp_path / "out" / "result.json").is_file()
    assert (tmp_path / "runs" / "cli" / "student.pt").is_file()
