"""MLflow tracking and registry against a real `mlflow server` (sqlite backend, proxied artifacts), no mocks.

One module-scoped server and digits teacher; one tiny robustness sweep run through the real CLI
(`python -m rdskd_dist.tune --tracking-uri ...`: 2 methods x 2 points, G2/S4 at batch 16, each trial
a one-worker Ray Train run) whose parent run, child runs, artifacts and champion the tests read
back; `python -m rdskd_dist.pull --evaluate` must reproduce the champion's logged accuracy exactly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0", "RAY_AUTH_MODE": "disabled",
         "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
for _k, _v in QUIET.items():
    os.environ.setdefault(_k, _v)

SWEEP_SPEC = """\
name: tiny-mlflow
mode: robustness
methods: [rdskd, dafl]
base:
  dataset: digits
  teacher: {teacher}
  generator_steps: 2
  student_steps: 4
  batch_size: 16
  log_every: 2
  eval_batch_size: 512
space:
  w_oh: {{low: 0.5, high: 2}}
num_points: 1
seeds: [0]
max_concurrent: 2
trial:
  workers: 1
  cpus_per_worker: 0.99
output: {output}
"""


# ---------------------------------------------------------------- a real tracking server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(MLFLOW_BIN), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{folder.resolve()}/mlflow.db",
           "--artifacts-destination", str((folder / "artifacts").resolve()), "--workers", "1"]
    log = open(folder / f"server-{port}-{time.time():.0f}.log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder)


def wait_healthy(uri: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {uri} not healthy after {timeout}s")


def stop_server(proc: subprocess.Popen) -> None:
    """The server and its uvicorn worker (one process group, started by this test)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


class Server:
    """A real `mlflow server` this module starts (and restarts), on a free port of 127.0.0.1."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = start_server(folder, self.port)  # booting (about 10-25 s) while the teacher trains

    def wait(self) -> str:
        wait_healthy(self.uri, self.proc)
        return self.uri

    def stop(self) -> None:
        stop_server(self.proc)

    def restart(self) -> None:
        self.proc = start_server(self.folder, self.port)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(mlflow_server, teacher) -> str:
    """The server's URI once it is healthy (the teacher fixture trains while it boots)."""
    return mlflow_server.wait()


@pytest.fixture(scope="module")
def teacher(mlflow_server, tmp_path_factory) -> Path:
    from rdskd_dist.teacher_training import TeacherConfig, train_teacher
    from rdskd_dist.teachers import save_teacher

    out = tmp_path_factory.mktemp("teacher") / "digits_lenet5.pt"
    torch.manual_seed(0)
    model, accuracy = train_teacher(TeacherConfig(dataset="digits", epochs=3, out=out), log=lambda _: None)
    save_teacher(model, out, dataset="digits", test_accuracy=accuracy)
    return out


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 600, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, **QUIET, **(env or {})})


# ---------------------------------------------------------------- the sweep

@pytest.fixture(scope="module")
def sweep(server, teacher, tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep")
    spec = work / "tiny.yaml"
    spec.write_text(SWEEP_SPEC.format(teacher=teacher, output=work / "sweeps"))
    start = time.perf_counter()
    proc = run_cli("rdskd_dist.tune", "--spec", str(spec), "--tracking-uri", server, cwd=work)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    client = client_for(server)
    exp = client.get_experiment_by_name("tiny-mlflow")
    assert exp is not None, proc.stdout[-3000:]
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("rdskd.run_type") == "sweep"]
    children = [r for r in runs if r.data.tags.get("rdskd.run_type") == "trial"]
    return {"proc": proc, "experiment": exp, "parents": parents, "children": children, "dir": work / "sweeps" / "tiny-mlflow",
            "work": work, "seconds": time.perf_counter() - start}


def test_sweep_is_one_parent_run_with_one_child_per_trial(sweep, teacher):
    from rdskd_dist.files import sha256_file

    assert len(sweep["parents"]) == 1
    parent = sweep["parents"][0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "sweep tiny-mlflow"
    assert parent.data.params["methods"] == "rdskd,dafl" and parent.data.params["mode"] == "robustness"
    assert parent.data.metrics["trials_ok"] == 2 and {"accuracy_mean/rdskd", "accuracy_mean/dafl"} <= set(parent.data.metrics)
    assert "mlflow.note.content" in sweep["experiment"].tags and "mlflow.note.content" in parent.data.tags

    children = sweep["children"]
    assert sorted(r.info.run_name for r in children) == ["dafl-p000-s0", "rdskd-p000-s0"]
    digest = sha256_file(teacher)
    trial_ids = set()
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED", tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["method"] == run.info.run_name.split("-")[0] == params["method"]
        assert tags["dataset"] == "digits" and tags["teacher_sha256"] == digest
        assert tags["rdskd.status"] == "ok" and tags["rdskd.artifacts"] == "complete", tags
        assert tags["ray.trial_id"] and tags["git_commit"]
        trial_ids.add(tags["ray.trial_id"])
        # every hyperparameter of the resolved config, with the trial's own values
        assert params["generator_steps"] == "2" and params["student_steps"] == "4" and params["batch_size"] == "16"
        assert params["seed"] == "0" and params["student"] == "lenet5_half"
        for key in ("w_oh", "w_ie", "lr_generator", "lr_student", "temperature", "schedule", "mult_w_oh"):
            assert key in params, key
        # final metrics and metric histories over steps
        assert 0 <= metrics["student_accuracy"] <= 100 and metrics["teacher_accuracy"] > 0
        assert metrics["samples_per_s_overall"] > 0 and metrics["wall_time_s"] > 0
        assert {"generator/oh_one_hot", "generator/ie_class_entropy", "student/total_loss", "samples_per_s"} <= set(metrics)
        if params["method"] == "rdskd":  # penalty references and inter-sample diversity
            assert {"penalty_reference/oh", "penalty_reference/ie", "generator/ds_sample_diversity"} <= set(metrics)
        else:
            assert "generator/a_activation" in metrics
    assert len(trial_ids) == 2


def test_trial_artifacts_and_history(sweep, server):
    client = client_for(server)
    run = next(r for r in sweep["children"] if r.info.run_name == "dafl-p000-s0")
    history = client.get_metric_history(run.info.run_id, "generator/oh_one_hot")
    assert [m.step for m in history] == [2, 4]  # DAFL's joint schedule: reports at iterations 2 and 4
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"student", "generator", "samples.png"} <= files
    assert {a.path for a in client.list_artifacts(run.info.run_id, "student")} == {"student/student.pt", "student/result.json"}
    local = Path(client.download_artifacts(run.info.run_id, "generator", str(sweep["work"] / "gen")))
    payload = torch.load(local / "generator.pt", weights_only=True)
    from rdskd_dist.models import create_model

    arch = dict(payload["arch"])
    generator = create_model(arch.pop("name"), **arch)
    generator.load_state_dict(payload["state_dict"])
    assert generator(torch.randn(3, arch["latent_dim"])).shape == (3, 1, 32, 32)
    # the sweep's own files on the parent run
    parent = sweep["parents"][0]
    results = {a.path for a in client.list_artifacts(parent.info.run_id, "results")}
    assert {"results/results.parquet", "results/summary.json", "results/summary.md"} <= results
    assert any(a.path.endswith(".png") for a in client.list_artifacts(parent.info.run_id, "plots"))


def test_best_student_is_registered_as_champion_with_lineage(sweep, server):
    client = client_for(server)
    parent = sweep["parents"][0]
    best = max(sweep["children"], key=lambda r: (r.data.metrics["student_accuracy"], -r.info.end_time))
    version = client.get_model_version_by_alias("rdskd-digits-lenet5_half", "champion")
    champion_run = client.get_run(version.run_id)
    assert champion_run.data.metrics["student_accuracy"] == best.data.metrics["student_accuracy"]
    tags = version.tags
    assert tags["rdskd.sweep_run_id"] == parent.info.run_id
    assert tags["ray.trial_id"] == champion_run.data.tags["ray.trial_id"]
    assert tags["teacher_sha256"] == champion_run.data.tags["teacher_sha256"]
    assert tags["rdskd.trial_key"] == champion_run.info.run_name
    assert version.status == "READY" and version.source.startswith("models:/m-")
    assert parent.data.tags["rdskd.champion"] == f"models:/rdskd-digits-lenet5_half/{version.version}"
    # the first sweep on the problem: its best is both the latest sweep's and the champion
    assert client.get_model_version_by_alias("rdskd-digits-lenet5_half", "latest-sweep").version == version.version


def test_the_champion_moves_only_to_a_better_student_on_the_same_objective():
    from types import SimpleNamespace

    from rdskd_dist.tracking.sweep import _better

    def holder(**tags):
        return SimpleNamespace(tags=tags)

    champion = holder(student_accuracy="98.24", objective="max student_accuracy")
    assert _better(champion, "student_accuracy", "max", 97.58)  # a later, smaller sweep's best: champion stays
    assert not _better(champion, "student_accuracy", "max", 98.30)  # a better student takes the alias
    assert not _better(holder(student_accuracy="98.24", objective="min student_accuracy"), "student_accuracy", "max",
                       50.0)  # registered under another objective: not comparable, the new best takes it
    assert not _better(holder(), "student_accuracy", "max", 1.0)  # no figure on the version
    assert _better(holder(loss="0.1", objective="min loss"), "loss", "min", 0.2)


def test_the_registered_trial_is_the_best_with_a_logged_model_and_an_unlogged_best_is_named():
    from rdskd_dist.tracking.sweep import champion_choice

    rows = [{"key": "p0", "status": "ok", "student_accuracy": 98.55, "finished_at": 1},  # logged elsewhere
            {"key": "p1", "status": "ok", "student_accuracy": 98.50, "finished_at": 3},
            {"key": "p2", "status": "ok", "student_accuracy": 98.50, "finished_at": 2},  # same figure, earlier
            {"key": "p3", "status": "error", "student_accuracy": 99.0, "finished_at": 4},
            {"key": "p4", "status": "ok", "student_accuracy": float("nan"), "finished_at": 5}]
    best, unlogged = champion_choice(rows, {"p1", "p2", "p3", "p4"}, "student_accuracy", "max")
    assert best["key"] == "p2" and unlogged["key"] == "p0"
    best, unlogged = champion_choice(rows, {"p0", "p1"}, "student_accuracy", "max")
    assert best["key"] == "p0" and unlogged is None
    best, unlogged = champion_choice(rows, {"p1"}, "student_accuracy", "max", best_trial="p2")
    assert best is None and unlogged["key"] == "p0"  # the named trial has no model: nothing to register
    best, _ = champion_choice(rows, {"p0", "p1", "p2"}, "student_accuracy", "min")
    assert best["key"] == "p2"  # min: 98.50 at the earlier finish


def test_pt2_model_loads_back_and_predicts(sweep, server, tmp_path):
    import mlflow.pytorch

    from rdskd_dist.tracking.artifacts import load_student
    from rdskd_dist.tracking.client import use_tracking_uri

    with use_tracking_uri(server):
        exported = mlflow.pytorch.load_model("models:/rdskd-digits-lenet5_half@champion", dst_path=str(tmp_path))
        folder = Path(mlflow.artifacts.download_artifacts("models:/rdskd-digits-lenet5_half@champion",
                                                          dst_path=str(tmp_path / "files")))
    student, _ = load_student(folder / "extra_files" / "student.pt")
    x = torch.randn(7, 1, 32, 32)
    with torch.no_grad():
        assert exported(x).shape == (7, 10)
        torch.testing.assert_close(exported(x), student(x), rtol=1e-5, atol=1e-5)
    assert type(student).__name__ == "LeNet5"


def test_pull_evaluate_reproduces_the_logged_accuracy(sweep, server, tmp_path):
    client = client_for(server)
    version = client.get_model_version_by_alias("rdskd-digits-lenet5_half", "champion")
    logged = client.get_run(version.run_id).data.metrics["student_accuracy"]
    proc = run_cli("rdskd_dist.pull", "models:/rdskd-digits-lenet5_half@champion", "--out", str(tmp_path / "pulled"),
                   "--evaluate", "--tracking-uri", server, "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["test_accuracy"] == logged  # exactly: same weights, same evaluation settings
    assert report["version"] == int(version.version) and report["dataset"] == "digits"
    assert report["pt2_max_abs_diff"] is not None and report["pt2_max_abs_diff"] < 1e-4
    assert (tmp_path / "pulled" / "extra_files" / "student.pt").is_file()


def test_pull_prints_lineage_and_accuracy(sweep, server, tmp_path, capsys):
    from rdskd_dist.pull import main as pull_main

    client = client_for(server)
    version = client.get_model_version_by_alias("rdskd-digits-lenet5_half", "champion")
    logged = client.get_run(version.run_id).data.metrics["student_accuracy"]
    assert pull_main(["models:/rdskd-digits-lenet5_half@champion", "--out", str(tmp_path / "p"), "--evaluate",
                      "--tracking-uri", server]) == 0
    out = capsys.readouterr().out
    assert f"version {version.version}" in out and f"trial {version.tags['rdskd.trial_key']}" in out
    assert f"{logged:.2f}% = the accuracy recorded at training" in out, out
    with pytest.raises(SystemExit) as exit_info:
        pull_main(["models:/rdskd-digits-lenet5_half@no-such-alias", "--tracking-uri", server])
    assert exit_info.value.code == 2 and "not found in the registry" in capsys.readouterr().err


# ---------------------------------------------------------------- fail fast

@pytest.mark.parametrize("entry", ["tune", "train"])
def test_unreachable_server_is_one_line_error_before_training(entry, teacher, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    if entry == "tune":
        spec = tmp_path / "tiny.yaml"
        spec.write_text(SWEEP_SPEC.format(teacher=teacher, output=tmp_path / "sweeps"))
        args = ["--spec", str(spec), "--tracking-uri", uri]
    else:
        args = ["--teacher", str(teacher), "--generator-steps", "2", "--student-steps", "4", "--batch-size", "16",
                "--output", str(tmp_path / "out"), "--tracking-uri", uri]
    start = time.perf_counter()
    proc = run_cli(f"rdskd_dist.{entry}", *args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: MLflow tracking server {uri} is unreachable"), proc.stderr
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "out").exists()  # nothing started
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("uri, message", [
    ("htp://127.0.0.1:5000", "unsupported MLflow tracking URI scheme"),
    ("http://127.0.0.1:notaport", "bad port"),
    ("mlruns", "has no scheme"),
])
def test_malformed_uri_is_one_line_error(uri, message, teacher, tmp_path, capsys):
    from rdskd_dist.train import main as train_main

    with pytest.raises(SystemExit) as exit_info:
        train_main(["--teacher", str(teacher), "--tracking-uri", uri, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_check_tracking_uri_normalises_local_stores(tmp_path, monkeypatch):
    from rdskd_dist.tracking import check_tracking_uri

    assert check_tracking_uri(f"sqlite:///{tmp_path}/a/mlflow.db") == f"sqlite:///{tmp_path}/a/mlflow.db"
    assert check_tracking_uri(str(tmp_path / "b.db")) == f"sqlite:///{tmp_path}/b.db"
    monkeypatch.chdir(tmp_path)
    assert check_tracking_uri("sqlite:///rel/mlflow.db") == f"sqlite:///{tmp_path.resolve()}/rel/mlflow.db"


def test_metric_names_are_valid_and_readable():
    from rdskd_dist.tracking.names import metric_name, progress_metrics

    assert metric_name("g/oh") == "generator/oh_one_hot" and metric_name("s/total") == "student/total_loss"
    assert metric_name("g/ref_ie") == "penalty_reference/ie" and metric_name("g/new_term") == "generator/new_term"
    assert metric_name("weird key#1") == "weird key_1"
    got = progress_metrics({"g/oh": 1.0, "s/total": float("nan"), "iteration": 3, "samples_per_s": 5.0, "hostname": "x"})
    assert got == {"generator/oh_one_hot": 1.0, "samples_per_s": 5.0}


# ---------------------------------------------------------------- teachers, train runs, registry safety

def test_teacher_registry_and_train_run_from_models_uri(server, teacher, tmp_path):
    from rdskd_dist.files import sha256_file
    from rdskd_dist.tracking import register_teacher, resolve_teacher_uri

    uri = register_teacher(teacher, "digits", "lenet5", tracking_uri=server)
    assert uri == "models:/rdskd-teacher-digits-lenet5@current"
    assert register_teacher(teacher, tracking_uri=server) == uri  # same file: same version, no duplicate
    client = client_for(server)
    assert len(client.search_model_versions("name='rdskd-teacher-digits-lenet5'")) == 1
    local = resolve_teacher_uri(uri, tracking_uri=server, dst=tmp_path / "t")
    assert sha256_file(local) == sha256_file(teacher)

    proc = run_cli("rdskd_dist.train", "--teacher", uri, "--tracking-uri", server, "--generator-steps", "2",
                   "--student-steps", "4", "--batch-size", "16", "--log-every", "2", "--output", str(tmp_path / "out"),
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = client.get_experiment_by_name("rdskd-train")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`rdskd.run_type` = 'train'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["teacher_sha256"] == sha256_file(teacher) and run.info.status == "FINISHED"
    assert run.data.params["generator_steps"] == "2" and "student_accuracy" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "generator/oh_one_hot")] == [2]
    versions = client.search_model_versions(f"run_id='{run.info.run_id}'")
    assert len(versions) == 1 and versions[0].name == "rdskd-digits-lenet5_half"


def test_a_failed_registration_leaves_no_version(server, sweep):
    from mlflow.exceptions import MlflowException

    from rdskd_dist.tracking.client import RetryingClient
    from rdskd_dist.tracking.registry import register_version

    client = RetryingClient(server)
    run = sweep["children"][0]
    before = len(client.search_model_versions("name='rdskd-half-registered'"))
    with pytest.raises(MlflowException):  # an alias MLflow refuses: fails after the version exists
        register_version(client, "rdskd-half-registered", source=f"models:/{run.data.tags['rdskd.model_id']}",
                         run_id=run.info.run_id, model_id=run.data.tags["rdskd.model_id"], alias="not a valid alias!")
    assert len(client.search_model_versions("name='rdskd-half-registered'")) == before == 0


def test_logging_survives_a_server_restart(mlflow_server, server):
    """Last in this module: the shared server is stopped and started again on the same port."""
    from rdskd_dist.tracking.client import RetryingClient

    client = RetryingClient(server, retry_for_s=180)
    exp = client.create_experiment("restart")
    run_id = client.create_run(exp).info.run_id
    client.log_metric(run_id, "x", 1.0, step=1)
    mlflow_server.stop()
    done = {}

    def log_while_down():
        try:
            client.log_metric(run_id, "x", 2.0, step=2)  # retried with backoff until the server is back
            done["ok"] = True
        except Exception as exc:  # noqa: BLE001
            done["error"] = exc

    thread = threading.Thread(target=log_while_down)
    thread.start()
    time.sleep(3)
    assert thread.is_alive()  # still waiting for the server, not failed
    mlflow_server.restart()
    mlflow_server.wait()
    thread.join(timeout=180)
    assert done.get("ok"), done
    assert [m.value for m in client.get_metric_history(run_id, "x")] == [1.0, 2.0]


def test_a_logged_model_registers_in_a_sqlite_store_away_from_the_working_folder_and_only_once(tmp_path, monkeypatch):
    # MLflow's sqlite registry looks a `models:/<id>` source up through its global tracking URI, not the
    # client's: a store named by --tracking-uri, away from the working folder, must still register.
    from rdskd_dist.tracking.client import RetryingClient
    from rdskd_dist.tracking.registry import alias_version, existing_version, register_version

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    for folder in ("elsewhere", "store"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    client = RetryingClient(f"sqlite:///{tmp_path}/store/mlflow.db", retry_for_s=0)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "store" / "artifacts").as_uri())
    run = client.create_run(experiment)
    model = client.create_logged_model(experiment, name="student", source_run_id=run.info.run_id)
    version = register_version(client, "a-student", source=f"models:/{model.model_id}", run_id=run.info.run_id,
                               model_id=model.model_id, alias="champion")
    assert client.get_model_version_by_alias("a-student", "champion").version == version.version
    assert not (tmp_path / "elsewhere" / "mlflow.db").exists()  # nothing created where the command ran
    # a resumed sweep registers the same champion again: no second version, the alias comes back to the first
    other = client.create_logged_model(experiment, name="student", source_run_id=run.info.run_id)
    assert existing_version(client, "a-student", f"models:/{other.model_id}") is None  # the sweep says "registered"
    second = register_version(client, "a-student", source=f"models:/{other.model_id}", run_id=run.info.run_id,
                              model_id=other.model_id, alias="champion")
    again = register_version(client, "a-student", source=f"models:/{model.model_id}", run_id=run.info.run_id,
                             model_id=model.model_id, alias="champion")
    assert second.version != version.version and again.version == version.version
    assert existing_version(client, "a-student", f"models:/{model.model_id}").version == version.version
    assert alias_version(client, "a-student", "champion").version == version.version
    assert alias_version(client, "a-student", "latest-sweep") is None and alias_version(client, "none", "x") is None
    assert client.get_model_version_by_alias("a-student", "champion").version == version.version
    assert len(client.search_model_versions("name='a-student'")) == 2
