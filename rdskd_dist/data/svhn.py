"""SVHN cropped digits from the official MATLAB files (train_32x32.mat, test_32x32.mat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from rdskd_dist.data.paths import fetch, find_first, missing_error, require_root
from rdskd_dist.errors import UserError
from rdskd_dist.data.registry import DatasetSpec, register_dataset


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """X is H x W x C x N and y is N x 1 with 10 standing for digit 0."""
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises assorted types (MatReadError, ValueError, IndexError) on damage
        raise UserError(f"cannot read {path}: {exc} (truncated or corrupt file?)") from exc
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise UserError(f"{path}: expected X of shape 32x32x3xN and y with N labels (not an SVHN file?)")
    images = np.ascontiguousarray(x.astype(np.uint8, copy=False).transpose(3, 2, 0, 1))
    labels = y.reshape(-1).astype(np.int64)
    labels[labels == 10] = 0
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_svhn(split: str, root: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 3x32x32 images and int64 labels 0..9 from {split}_32x32.mat under root or root/svhn."""
    name = f"{split}_32x32.mat"
    root = require_root("svhn", root, download, name)
    dirs = [root, root / "svhn"]
    path = find_first(dirs, (name,))
    if path is None and download:
        from torchvision.datasets import SVHN  # only needed to download

        fetch("svhn", root, lambda: SVHN(str(root), split=split, download=True))
        path = find_first(dirs, (name,))
    if path is None:
        raise missing_error("svhn", [(name, dirs)])
    return read_svhn_mat(path)


register_dataset(
    DatasetSpec(
        name="svhn",
        num_classes=10,
        channels=3,
        image_size=32,
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        teacher_arch="wrn40_2",
        student_arch="wrn16_1",
        latent_dim=1000,
        description="SVHN cropped digits, 73257/26032, 32x32 RGB (label 10 -> 0)",
    ),
    load_svhn,
)
