"""LeNet-5 and LeNet-5-half as used by DAFL and RDSKD (32x32 inputs)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.errors import UserError
from rdskd_dist.models.base import Classifier, Features
from rdskd_dist.models.registry import register_model


class LeNet5(Classifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32, width: float = 1.0):
        super().__init__()
        if image_size != 32:
            raise UserError(f"LeNet-5 takes 32x32 inputs, not {image_size}x{image_size}")
        c1, c2, c3, f1 = (max(1, round(c * width)) for c in (6, 16, 120, 84))
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.conv3 = nn.Conv2d(c2, c3, 5)
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
