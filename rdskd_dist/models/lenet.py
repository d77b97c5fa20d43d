"""LeNet-5 and LeNet-5-half as used by DAFL and RDSKD (32x32 inputs; the same stack at other sizes)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.models.base import Classifier, Features
from rdskd_dist.models.registry import register_model


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
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
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
