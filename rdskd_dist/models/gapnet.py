"""A small all-convolutional student with global average pooling (any input size).

Why it is here: a teacher that pools globally (GAP; most modern CNNs, torchvision's included) scores an image by
the average of local evidence, so its generated samples often spread that evidence over the canvas as texture.
A student that pools the same way learns the same local-evidence function from such samples, where LeNet-5's
position-specific dense layers learn where the texture was.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.models.base import Classifier, Features
from rdskd_dist.models.registry import register_model


class GapNet(Classifier):
    """3x3 conv-ReLU stages of 16, 32, 32 and 64 channels (times `width`), the middle two with stride 2, then
    global average pooling and one Linear: the shape of a typical small GAP CNN, without normalisation layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32, width: float = 1.0):
        super().__init__()
        c1, c2, c3, c4 = (max(1, round(c * width)) for c in (16, 32, 32, 64))
        self.convs = nn.ModuleList([nn.Conv2d(in_channels, c1, 3, padding=1), nn.Conv2d(c1, c2, 3, stride=2, padding=1),
                                    nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.Conv2d(c3, c4, 3, padding=1)])
        self.fc = nn.Linear(c4, num_classes)
        self.preact_spatial = True
        self.penultimate_dim = self.preact_channels = c4

    def forward_features(self, x: torch.Tensor) -> Features:
        for conv in self.convs[:-1]:
            x = F.relu(conv(x))
        pre = self.convs[-1](x)
        feat = F.relu(pre).mean(dim=(2, 3))
        return Features(self.fc(feat), feat, pre, feat)


@register_model("gapnet")
def gapnet(num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> GapNet:
    return GapNet(num_classes, in_channels, image_size)


@register_model("gapnet_half")
def gapnet_half(num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> GapNet:
    return GapNet(num_classes, in_channels, image_size, width=0.5)
