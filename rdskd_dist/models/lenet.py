"""LeNet-5 and LeNet-5-half as used by DAFL and RDSKD (32x32 inputs; the same stack at other sizes)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.models.base import Classifier, Features
from rdskd_dist.models.registry import register_model


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 2), exactly. Where no gradient is wanted (a frozen teacher relabelling student batches,
    evaluation), the maximum of the four strided sub-grids: on a CPU ATen's pooling kernel vectorises over
    channels, and LeNet's 6 and 16 leave it mostly idle (about 4x slower than this at LeNet-5's first pool, batch
    64, session 35). The gradient path keeps the kernel: the maxima's own backward is slower still."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, 2)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # odd sizes: floor, as max_pool2d does
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class LeNet5(Classifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32, width: float = 1.0):
        super().__init__()
        # The reference at 32x32. Smaller inputs: conv1 and conv2 pad by (32 - size) / 8, so that 16x16 keeps a
        # 4x4 map before conv3 (unpadded it would be 1x1: 16 numbers for the whole image), and conv3 spans the map
        # that is left, as its 5x5 does at 32.
        pad = max(0, (32 - image_size) // 8)
        remaining = ((image_size + 2 * pad - 4) // 2 + 2 * pad - 4) // 2  # at least 1 for any size
        c1, c2, c3, f1 = (max(1, round(c * width)) for c in (6, 16, 120, 84))
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=pad)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=pad)
        self.conv3 = nn.Conv2d(c2, c3, remaining)
        self.fc1 = nn.Linear(c3, f1)
        self.fc2 = nn.Linear(f1, num_classes)
        self.preact_spatial = False
        self.penultimate_dim = self.preact_channels = f1

    def forward_features(self, x: torch.Tensor) -> Features:
        # ReLU after the pool: the same values and gradients (max and ReLU commute), on a quarter of the elements
        x = F.relu(max_pool_2x2(self.conv1(x)))
        x = F.relu(max_pool_2x2(self.conv2(x)))
        trunk = F.relu(self.conv3(x)).flatten(1)
        pre = self.fc1(trunk)
        feat = F.relu(pre)
        return Features(self.fc2(feat), feat, pre, trunk)


@register_model("lenet5")
def lenet5(num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> LeNet5:
    return LeNet5(num_classes, in_channels, image_size)


@register_model("lenet5_half")
def lenet5_half(num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> LeNet5:
    return LeNet5(num_classes, in_channels, image_size, width=0.5)
