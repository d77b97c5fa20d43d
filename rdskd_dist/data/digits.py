"""scikit-learn's bundled 8x8 digits: a tiny offline dataset for smoke runs and tests."""

from __future__ import annotations

from pathlib import Path

import torch
from rdskd_dist.data.registry import DatasetSpec, register_dataset

TRAIN_SIZE = 1437
TEST_SIZE = 360
_SPLIT_SEED = 0


def _digits_arrays():
    """(images N x 8 x 8 in 0..16, labels) of scikit-learn's digits. Read straight from the CSV file that
    ships inside scikit-learn (what `load_digits` reads) without importing scikit-learn, which takes
    seconds (scipy and more) in every fresh process, e.g. each sweep trial's Ray Train worker."""
    import gzip
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # another layout: scikit-learn's own loader

    bunch = load_digits()
    return bunch.images, bunch.target


def load_digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed seeded split (first 1437 of a permutation train, last 360 test): float 1x8x8 images on the 0..255
    scale (load_split upscales them once, to 32x32 by default, and rounds to uint8)."""
    raw_images, raw_labels = _digits_arrays()
    images = torch.as_tensor(raw_images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    labels = torch.as_tensor(raw_labels, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    chosen = order[:TRAIN_SIZE] if split == "train" else order[-TEST_SIZE:]
    return images[chosen], labels[chosen]


def load_digits_root(split: str, _root: Path | None, _download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled split: no folder, nothing to download."""
    return load_digits_split(split)


register_dataset(
    DatasetSpec(
        name="digits",
        num_classes=10,
        channels=1,
        image_size=32,
        # Computed once from the train split as produced by digits.load_digits_split.
        mean=(0.3049,),
        std=(0.3234,),
        teacher_arch="lenet5",
        student_arch="lenet5_half",
        latent_dim=100,
        description="scikit-learn 8x8 digits (offline), 1437/360, upscaled to 32x32",
        reference_dataset="mnist",
    ),
    load_digits_root,
)
