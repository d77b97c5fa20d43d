"""Wide ResNets (Zagoruyko & Komodakis): WRN-depth-width with pre-activation blocks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.models.base import Classifier, Features
from rdskd_dist.models.registry import register_model


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(Classifier):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int):
        super().__init__()
        assert (depth - 4) % 6 == 0, "WRN depth must be 6n+4"
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, cin = [], widths[0]
        for stage, cout in enumerate(widths[1:]):
            for j in range(n):
                layers.append(WideBlock(cin, cout, 2 if (stage > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.preact_spatial = True
        self.penultimate_dim = self.preact_channels = cin

    def forward_features(self, x: torch.Tensor) -> Features:
        pre = self.bn(self.blocks(self.conv1(x)))
        feat = F.adaptive_avg_pool2d(F.relu(pre), 1).flatten(1)
        return Features(self.fc(feat), feat, pre, feat)


def _wrn(depth: int, widen: int):
    def factory(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> WideResNet:
        return WideResNet(depth, widen, num_classes, in_channels)

    return factory


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    register_model(f"wrn{_depth}_{_widen}")(_wrn(_depth, _widen))
