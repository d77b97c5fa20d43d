"""load_split: the single entry point that dispatches to the per-format readers."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rdskd_dist.data import cifar, digits, idx, svhn  # noqa: F401  (each registers its datasets)
from rdskd_dist.data.paths import resolve_data_root
from rdskd_dist.data.registry import DatasetSpec, get_loader, get_spec
from rdskd_dist.data.tensors import ImageTensors, to_input
from rdskd_dist.errors import UserError

SPLITS = ("train", "test")


def load_split(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    spec: DatasetSpec | None = None,
) -> ImageTensors:
    """Load a whole split into memory as uint8 images (32x32 by default) with int64 labels.

    root falls back to $RDSKD_DATA_ROOT; download=True fetches via torchvision only if files are missing.
    `spec`: the dataset's spec with other inputs (`DatasetSpec.with_input`): the images are resized from
    their native size (MNIST 28, digits 8) and their channels converted once, here.
    """
    spec = get_spec(name) if spec is None else spec
    if spec.name != name:
        raise ValueError(f"load_split({name!r}) got the spec of {spec.name!r}")
    if split not in SPLITS:
        raise UserError(f"{name}: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    images, labels = get_loader(name)(split, resolve_data_root(root), download)
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < spec.num_classes:
        raise UserError(
            f"{name} {split}: labels span {int(labels.min())}..{int(labels.max())}, "
            f"expected 0..{spec.num_classes - 1} (wrong or corrupt files?)"
        )
    return ImageTensors(images=to_input(images, spec), labels=labels, spec=spec)
