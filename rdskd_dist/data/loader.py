"""load_split: the single entry point that dispatches to the per-format readers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from rdskd_dist.data.cifar import load_cifar10, load_cifar100
from rdskd_dist.data.digits import load_digits_split
from rdskd_dist.data.idx import load_mnist
from rdskd_dist.data.paths import resolve_data_root
from rdskd_dist.data.registry import get_spec
from rdskd_dist.data.svhn import load_svhn
from rdskd_dist.data.tensors import ImageTensors
from rdskd_dist.errors import UserError

SPLITS = ("train", "test")

_Loader = Callable[[str, Path | None, bool], tuple[torch.Tensor, torch.Tensor]]
_LOADERS: dict[str, _Loader] = {
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "digits": lambda split, _root, _download: load_digits_split(split),  # bundled with sklearn
}


def load_split(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> ImageTensors:
    """Load a whole split into memory as uint8 32x32 images with int64 labels.

    root falls back to $RDSKD_DATA_ROOT; download=True fetches via torchvision only if files are missing.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise UserError(f"{name}: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    images, labels = _LOADERS[name](split, resolve_data_root(root), download)
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < spec.num_classes:
        raise UserError(
            f"{name} {split}: labels span {int(labels.min())}..{int(labels.max())}, "
            f"expected 0..{spec.num_classes - 1} (wrong or corrupt files?)"
        )
    return ImageTensors(images=images, labels=labels, spec=spec)
