"""Shared fixtures: a small digits teacher and a local Ray, each started once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # throwaway local test clusters

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """A LeNet-5 teacher on the digits demo (about 97% test accuracy, a few seconds on 2 cores)."""
    from rdskd_dist.teacher_training import TeacherConfig, train_teacher
    from rdskd_dist.teachers import save_teacher

    path = tmp_path_factory.mktemp("teacher") / "digits_lenet5.pt"
    torch.manual_seed(0)
    cfg = TeacherConfig(dataset="digits", epochs=12, lr=3e-3, out=path)
    model, accuracy = train_teacher(cfg, log=lambda _msg: None)
    save_teacher(model, path, dataset="digits", test_accuracy=accuracy)
    return path


@pytest.fixture(scope="session")
def local_ray():
    """A real local Ray in this process (2 CPUs), started once for the session (and shut down only if started
    here); yields its GCS address, for a CLI subprocess to join with $RAY_ADDRESS. A plain `ray.init`, not the
    project's loopback start (`connect_ray`): a process that joins a single-node-mode Ray by address waits for a
    raylet on the machine's interface address. Tests that kill nodes or check Ray's own start-up start theirs."""
    ray = pytest.importorskip("ray")

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
                 log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
