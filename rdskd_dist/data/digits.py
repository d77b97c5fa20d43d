"""scikit-learn's bundled 8x8 digits: a tiny offline dataset for smoke runs and tests."""

from __future__ import annotations

import torch

from rdskd_dist.data.tensors import resize_to_32

TRAIN_SIZE = 1437
TEST_SIZE = 360
_SPLIT_SEED = 0


def load_digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed seeded split (first 1437 of a permutation train, last 360 test), upscaled to 32x32."""
    from sklearn.datasets import load_digits  # sklearn is slow to import; only this dataset needs it

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    chosen = order[:TRAIN_SIZE] if split == "train" else order[-TEST_SIZE:]
    return resize_to_32(images[chosen]), labels[chosen]
