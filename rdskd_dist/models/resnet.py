"""CIFAR-style ResNet-18/34: 3x3 stem, no max-pool, four stages of BasicBlocks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.models.base import Classifier, Features
from rdskd_dist.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the pre-activation sum; the caller applies the ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)


class ResNet(Classifier):
    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, (n, cout) in enumerate(zip(blocks, (64, 128, 256, 512))):
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.ModuleList(layers)
        self.linear = nn.Linear(512, num_classes)
        self.preact_spatial = True
        self.penultimate_dim = self.preact_channels = 512

    def forward_features(self, x: torch.Tensor) -> Features:
        out = F.relu(self.bn1(self.conv1(x)))
        for block in self.blocks:
            pre = block(out)
            out = F.relu(pre)
        feat = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return Features(self.linear(feat), feat, pre, feat)


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, in_channels)
