"""Shared fixtures: a small digits teacher trained once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """A LeNet-5 teacher on the digits demo (about 97% test accuracy, a few seconds on 2 cores)."""
    from rdskd_dist.teacher import TeacherConfig, train_teacher
    from rdskd_dist.teachers import save_teacher

    path = tmp_path_factory.mktemp("teacher") / "digits_lenet5.pt"
    torch.manual_seed(0)
    cfg = TeacherConfig(dataset="digits", epochs=12, lr=3e-3, out=path)
    model, accuracy = train_teacher(cfg, log=lambda _msg: None)
    save_teacher(model, path, dataset="digits", test_accuracy=accuracy)
    return path
