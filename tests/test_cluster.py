"""Sweeps on real multi-node Ray clusters (issue 6): `--storage`, where trials ran, retries after a lost node.

* `--storage` checks (one-line errors before any trial) and a sweep on a local Ray whose Train
  workers crash once (RDSKD_CRASH_AT_STEP): Tune retries every trial and Ray Train resumes it from
  its last checkpoint in the storage; `--resume` on a fresh driver folder pulls the ledger back.
* A head and two worker nodes (`cluster/local-cluster.sh`, 1 CPU each, own ports and state folder)
  and a real `mlflow server`: the sweep is submitted with `ray job submit`, its two trials' Train
  workers must start on two nodes, and the worker node running a trial that has checkpointed is
  killed (raylet and workers, SIGKILL); the sweep must still finish every trial exactly once, the
  killed one retried by Tune and resumed from its checkpoint.

Digits demo, tiny budgets: the numbers are meaningless, the machinery is what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from test_mlflow import start_server, stop_server, wait_healthy

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "local-cluster.sh"
BIN = Path(sys.executable).parent
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0", "RAY_AUTH_MODE": "disabled",
         "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# A lost node is noticed within seconds (defaults: about 15-30 s), and reports are polled often.
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                          "RAY_health_check_initial_delay_ms": "1000", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
TINY_BASE = {"dataset": "digits", "generator_steps": 10, "student_steps": 20, "batch_size": 32, "log_every": 2,
             "checkpoint_every": 2, "eval_batch_size": 512}


def sweep_spec(name: str, teacher: Path, output: Path, num_points: int, **base) -> dict:
    return {"name": name, "methods": ["rdskd", "dafl"], "base": {**TINY_BASE, "teacher": str(teacher), **base},
            "space": {"w_oh": {"low": 0.5, "high": 2}}, "num_points": num_points, "seeds": [0], "max_concurrent": 4,
            "trial": {"workers": 1, "cpus_per_worker": 0.99, "max_failures": 2}, "output": str(output)}


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_tune(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdskd_dist.tune", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, **QUIET, **(env or {})})


def parquet_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def port_block(size: int) -> int:
    """The first of `size` consecutive ports that are free on 127.0.0.1 and the host's address."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size > 60000:
            continue
        if all(_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------- --storage

@pytest.mark.parametrize("uri, message", [
    ("foo://bucket/x", "unknown storage scheme 'foo'"),
    ("s3:/bucket/x", "malformed storage URI s3:/bucket/x"),
    ("s3://", "no bucket or host"),
    ("file://relative/x", "needs an absolute path"),
])
def test_bad_storage_is_one_line_error_before_any_trial(uri, message, digits_teacher, tmp_path):
    spec = write_yaml(tmp_path / "s.yaml", sweep_spec("bad-storage", digits_teacher, tmp_path / "sweeps", 1))
    proc = run_tune("--spec", str(spec), "--storage", uri, "--no-tracking", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "sweeps" / "bad-storage").exists()  # nothing ran, no sweep folder


def test_unwritable_storage_fails_before_any_trial(digits_teacher, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    spec = write_yaml(tmp_path / "s.yaml", sweep_spec("unwritable", digits_teacher, tmp_path / "sweeps", 1))
    proc = run_tune("--spec", str(spec), "--storage", f"file://{blocker}/store", "--no-tracking", cwd=tmp_path,
                    timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot write to storage"), proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(1800)  # minutes on a quiet 2-core machine; generous for loaded ones
def test_crashed_trials_are_retried_from_their_checkpoints_in_storage(digits_teacher, tmp_path):
    """Every Train worker dies once (os._exit at iteration 6): Tune retries each trial once and Ray
    Train resumes it from its last checkpoint in file:// storage; the results are copied there and a
    --resume from a fresh driver folder (local-path storage) pulls the ledger back and runs nothing."""
    store = tmp_path / "store"
    spec = write_yaml(tmp_path / "s.yaml", sweep_spec("crash", digits_teacher, tmp_path / "driver1", 1))
    start = time.perf_counter()
    proc = run_tune("--spec", str(spec), "--storage", f"file://{store}", "--no-tracking", "--no-plots",
                    cwd=tmp_path, env={"RDSKD_CRASH_AT_STEP": "6", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"})
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    rows = parquet_rows(store / "crash" / "results.parquet")
    assert sorted(r["method"] for r in rows) == ["dafl", "rdskd"]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["retries"] == 1 and row["train_starts"] == 2, row
        assert 2 <= row["resumed_from_iteration"] < 30, row  # restored from a checkpoint, not from step 0
        assert row["node_id"] and row["hostname"] == socket.gethostname()
        assert row["result_path"].startswith(f"file://{store}/crash/train/")
        assert (store / "crash" / "train" / row["result_path"].rsplit("/", 1)[1] / "student.pt").is_file()
    for name in ("spec.yaml", "design.json", "summary.json", "summary.md"):
        assert (store / "crash" / name).is_file(), name
    assert len(list((store / "crash" / "ledger").glob("*.json"))) == 2
    assert any((store / "crash" / "tune").iterdir())  # Tune's experiment state lives in the storage
    print(f"crash sweep: {time.perf_counter() - start:.0f}s\n{proc.stdout[-1500:]}")

    # A new driver machine: no local sweep folder; the ledger comes back from the storage.
    (store / "crash" / "results.parquet").unlink()
    proc = run_tune("--spec", str(spec), "--output", str(tmp_path / "driver2"), "--storage", str(store), "--resume",
                    "--no-tracking", "--no-plots", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "resume: copied" in proc.stdout
    assert len(list((tmp_path / "driver2" / "crash" / "ledger").glob("*.json"))) == 2
    assert len(parquet_rows(store / "crash" / "results.parquet")) == 2  # reported again, nothing rerun


# ---------------------------------------------------------------- real multi-node clusters

class LocalCluster:
    """`cluster/local-cluster.sh` with its own state folder and a free block of ports; `stop` ends only it."""

    def __init__(self, workers: int):
        self.workers = workers
        # Ray's unix sockets live under the state folder: keep its path short (not pytest's tmp_path).
        self.dir = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))
        block = port_block(2 + 200 * (workers + 1))
        self.gcs_port, self.dashboard_port = block, block + 1
        self.env = {**os.environ, **QUIET, **FAST_FAILURE_DETECTION, "PATH": f"{BIN}:{os.environ['PATH']}",
                    "RDSKD_LOCAL_RAY_DIR": str(self.dir), "RDSKD_LOCAL_RAY_PORT": str(block),
                    "RDSKD_LOCAL_DASHBOARD_PORT": str(block + 1), "RDSKD_LOCAL_PORT_BASE": str(block + 2),
                    "RDSKD_LOCAL_OBJECT_STORE": str(100 * 2**20)}
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"

    def script(self, *args: str, timeout: float = 180) -> str:
        proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc.stdout

    def start(self, cpus_per_node: int = 1) -> None:
        self.script("start", str(self.workers), str(cpus_per_node))

    def node_id(self, i: int) -> str:
        return (self.dir / f"node_{i}.id").read_text().strip()

    def stop(self) -> None:
        try:
            self.script("stop", timeout=60)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def submit(self, *entrypoint: str, env_vars: dict | None = None) -> str:
        """`ray job submit` of the repository as the working dir; returns the job id."""
        runtime_env = {"excludes": [".git", "tests", "docs", "bench"],
                       "env_vars": {**QUIET, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", **(env_vars or {})}}
        proc = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", self.dashboard, "--no-wait",
                               "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--",
                               *entrypoint], capture_output=True, text=True, env=self.env, timeout=180)
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
        job_ids = [w.strip("'\"") for line in proc.stdout.splitlines() if "submitted successfully" in line
                   for w in line.split() if w.strip("'\"").startswith("raysubmit_")]
        assert job_ids, proc.stdout
        return job_ids[0]

    def job_client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard)

    def wait_job(self, job_id: str, timeout: float = 1200) -> tuple[str, str]:
        client = self.job_client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = str(client.get_job_status(job_id))
            if status.split(".")[-1] in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status.split(".")[-1], client.get_job_logs(job_id)
            time.sleep(2)
        client.stop_job(job_id)
        raise TimeoutError(f"job {job_id} not finished after {timeout}s:\n{client.get_job_logs(job_id)[-3000:]}")


@pytest.fixture
def mlflow_uri(tmp_path):
    port = port_block(1)
    proc = start_server(tmp_path / "mlflow", port)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_server(proc)


def mlflow_runs(uri: str, experiment: str) -> tuple[list, list]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return ([r for r in runs if r.data.tags.get("rdskd.run_type") == "sweep"],
            [r for r in runs if r.data.tags.get("rdskd.run_type") == "trial"])


def running_checkpointed_run(train_dir: Path, nodes: dict[str, int]) -> tuple[str, int] | None:
    """(run name, worker node number) of a Train run whose rank 0 runs on one of `nodes` (node id ->
    number) and that has a registered checkpoint (the controller's snapshot, not just a checkpoint
    folder being written) but no final student yet."""
    if not train_dir.is_dir():
        return None
    for run in sorted(train_dir.iterdir()):
        try:
            starts = json.loads((run / "location.json").read_text())
        except (OSError, ValueError):
            continue
        node = nodes.get(starts[-1].get("node_id")) if starts else None
        registered = (run / "checkpoint_manager_snapshot.json").is_file() and any(run.glob("checkpoint_*"))
        if node and registered and not (run / "student.pt").exists():
            return run.name, node
    return None


@pytest.mark.timeout(1800)  # minutes on a quiet 2-core machine; generous for loaded ones
def test_job_submit_spreads_trials_over_nodes_and_survives_losing_one(digits_teacher, tmp_path, mlflow_uri):
    """Head + two worker nodes, 1 CPU each; the sweep's two trials (1 CPU each: 0.01 trial + 0.99 Train
    worker) can only run as one Train worker per node. Submitted with `ray job submit`, tracked in a real
    MLflow server, results in file:// storage. Once a trial's Train worker runs on a worker node and has
    checkpointed, that node is killed (raylet, agents, workers: SIGKILL). The sweep must finish with every
    trial exactly once (one row, one ledger entry, one MLflow child run each), the killed one retried by
    Tune (FailureConfig) and resumed by Ray Train from its checkpoint on the node left free."""
    uri, mlflow_proc = mlflow_uri
    store = tmp_path / "store"
    data = sweep_spec("node-loss", digits_teacher, tmp_path / "sweeps", 1, generator_steps=20, student_steps=40)
    spec = write_yaml(tmp_path / "spec.yaml", data)
    cluster = LocalCluster(workers=2)
    start = time.perf_counter()
    try:
        cluster.start()
        nodes = {cluster.node_id(i): i for i in (0, 1, 2)}
        workers = {n: i for n, i in nodes.items() if i > 0}
        wait_healthy(uri, mlflow_proc)
        job = cluster.submit("python", "-m", "rdskd_dist.tune", "--spec", str(spec), "--storage", f"file://{store}",
                             "--tracking-uri", uri, "--no-plots")
        deadline = time.monotonic() + 300
        target = None
        while target is None and time.monotonic() < deadline:
            target = running_checkpointed_run(store / "node-loss" / "train", workers)
            time.sleep(0.2)
        assert target is not None, cluster.job_client().get_job_logs(job)[-4000:]
        run_name, node = target
        killed = next(n for n, i in workers.items() if i == node)
        cluster.script("kill-node", str(node))
        status, logs = cluster.wait_job(job)
        assert status == "SUCCEEDED", logs[-4000:]
    finally:
        cluster.stop()
    rows = parquet_rows(store / "node-loss" / "results.parquet")
    assert sorted(r["key"] for r in rows) == ["dafl-p000-s0", "rdskd-p000-s0"]  # once each
    assert len(list((store / "node-loss" / "ledger").glob("*.json"))) == 2
    assert all(r["status"] == "ok" for r in rows), [(r["key"], r["error"]) for r in rows]
    assert all(r["hostname"] == socket.gethostname() for r in rows)
    for name in ("summary.json", "summary.md", "spec.yaml", "ledger/dafl-p000-s0.json"):
        assert (store / "node-loss" / name).is_file(), name
    # one Train worker per node: the two trials started on two different nodes; both ended on survivors
    assert len({r["nodes"].split(",")[0] for r in rows}) == 2
    assert {r["node_id"] for r in rows} <= set(nodes) - {killed}
    hit = next(r for r in rows if r["result_path"].endswith("/" + run_name))
    assert hit["retries"] >= 1 and hit["train_starts"] >= 2, hit
    assert (hit["resumed_from_iteration"] or 0) >= 2, hit  # restored from its checkpoint, not rerun from step 0
    assert killed in hit["nodes"].split(",") and hit["node_id"] != killed
    parents, children = mlflow_runs(uri, "node-loss")
    assert len(parents) == 1 and len(children) == 2  # the retried trial is still one child run
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert {c.data.tags["rdskd.node_id"] for c in children} == {r["node_id"] for r in rows}
    print(f"node-loss job: {time.perf_counter() - start:.0f}s, killed node {node} under {run_name}: retries "
          f"{hit['retries']}, Train starts {hit['train_starts']}, resumed at iteration {hit['resumed_from_iteration']}")
