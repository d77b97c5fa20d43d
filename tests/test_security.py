"""Security: no credentials in anything printed or logged, and the servers we start listen on loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdskd_dist.errors import UserError, one_line
from rdskd_dist.redact import MASK, redact, split_credentials
from rdskd_dist.tracking.uri import check_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-secret"


# ---------------------------------------------------------------- redaction (unit)

@pytest.mark.parametrize("text, expected", [
    (f"http://user:{SECRET}@127.0.0.1:5000", f"http://user:{MASK}@127.0.0.1:5000"),
    (f"see https://alice:{SECRET}@mlflow.example.com/prefix now", f"see https://alice:{MASK}@mlflow.example.com/prefix now"),
    (f"http://{SECRET}@host:5000/", f"http://{MASK}@host:5000/"),
    (f"postgresql://db:{SECRET}@db-host/mlflow", f"postgresql://db:{MASK}@db-host/mlflow"),
    (f"http://host:5000/?token={SECRET}&x=1", f"http://host:5000/?token={MASK}&x=1"),
    (f"http://host/?access_key={SECRET}", f"http://host/?access_key={MASK}"),
    ("http://127.0.0.1:5000 and sqlite:////tmp/a.db", "http://127.0.0.1:5000 and sqlite:////tmp/a.db"),
    ("user@example.com wrote: lr=0.1", "user@example.com wrote: lr=0.1"),
])
def test_redact_masks_credentials_in_uris(text, expected):
    assert redact(text) == expected


def test_redact_masks_secret_environment_values(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-" + SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-" + SECRET)
    text = redact(f"header Bearer tok-{SECRET}, password pw-{SECRET}")
    assert SECRET not in text and text.count(MASK) == 2
    assert SECRET not in one_line(RuntimeError(f"failed with\nBearer tok-{SECRET}"))


def test_split_credentials():
    assert split_credentials(f"http://u%40x:{SECRET}@127.0.0.1:5000/p") == ("http://127.0.0.1:5000/p", "u@x", SECRET)
    assert split_credentials("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", None, None)


def test_tracking_uri_errors_never_show_credentials(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    for uri in (f"http://user:{SECRET}@127.0.0.1:1", f"http://127.0.0.1:1/?token={SECRET}",
                f"htp://user:{SECRET}@x", f"http://user:{SECRET}@127.0.0.1:notaport"):
        with pytest.raises(UserError) as info:
            check_tracking_uri(uri, timeout_s=1)
        assert SECRET not in str(info.value), str(info.value)


# ---------------------------------------------------------------- credentials against a real server

@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory, digits_teacher):
    """A real `mlflow server` on 127.0.0.1 (the server helpers of test_mlflow.py)."""
    from test_mlflow import Server

    server = Server(tmp_path_factory.mktemp("mlflow-security"))
    try:
        yield server.wait()
    finally:
        server.stop()


def test_credentials_never_reach_logs_or_mlflow(mlflow_uri, digits_teacher, tmp_path):
    host = mlflow_uri.removeprefix("http://")
    uri = f"http://user:{SECRET}@{host}"
    out = tmp_path / "out"
    env = {**os.environ, "MLFLOW_TRACKING_TOKEN": "tok-" + SECRET, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "rdskd_dist.train", "--teacher", str(digits_teacher), "--method", "dafl",
         "--generator-steps", "2", "--student-steps", "4", "--batch-size", "16", "--log-every", "2",
         "--output", str(out), "--tracking-uri", uri, "--run-name", "security-check"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert SECRET not in proc.stdout + proc.stderr
    assert "MLflow: run" in proc.stdout
    for file in out.rglob("*"):
        if file.is_file() and file.suffix in (".json", ".yaml", ".txt", ".md"):
            assert SECRET not in file.read_text(errors="replace"), file

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`mlflow.runName` = 'security-check'")
    assert len(runs) == 1
    run = runs[0]
    logged = json.dumps({"params": run.data.params, "tags": run.data.tags})
    assert SECRET not in logged and "tok-" not in logged
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            assert SECRET not in json.dumps({"tags": version.tags, "source": version.source,
                                             "description": version.description})


# ---------------------------------------------------------------- a local Ray listens on loopback only

LISTENERS_SCRIPT = """
import json, os, sys
from rdskd_dist.adapters.ray_connect import check_ray_address, init_ray
import ray, psutil

init_ray(num_cpus=1, include_dashboard=True)
ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process too
gcs = ray.get_runtime_context().gcs_address
check_ray_address(gcs)  # the fail-fast check accepts a live GCS
me = psutil.Process()
found = []
for proc in [me] + me.children(recursive=True):
    try:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                title = proc.cmdline()[0] if proc.cmdline()[0].startswith("ray::") else proc.name()
                found.append([proc.pid, title[:60], conn.laddr.ip, conn.laddr.port])
    except psutil.Error:
        pass
print(json.dumps({"gcs": gcs, "node_ip": ray.util.get_node_ip_address(), "listening": found}))
ray.shutdown()
"""


def test_local_ray_listens_on_loopback_only(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", LISTENERS_SCRIPT], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["node_ip"] == "127.0.0.1" and report["gcs"].startswith("127.0.0.1:")
    names = {row[1] for row in report["listening"]}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), report
    exposed = [row for row in report["listening"] if row[2] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not exposed, exposed
