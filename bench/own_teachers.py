"""Three teacher architectures that are not in the project's model zoo, as a user would bring them: plain
`nn.Module` factories, loaded from bare state_dicts with `--teacher-arch own_teachers:FACTORY` (with `bench/` on
the Python path) or passed from Python. Used by `bench/any_teacher.py`.

- `gn_gap_cnn`: an MNIST CNN without BatchNorm (GroupNorm after every conv, global average pooling, one Linear).
- `shufflenet_1ch`: torchvision's ShuffleNet V2 x0.5, untrained, with its first conv replaced by a 1-channel one.
- `small_cifar_cnn`: a small CIFAR-10 CNN with BatchNorm (four conv stages, global average pooling, one Linear).

Factories take `num_classes` and `in_channels`, which the project passes when it builds a bare state_dict teacher.
"""

from __future__ import annotations

import torch.nn as nn


def _gn_block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.ReLU(inplace=True)]


class GnGapCnn(nn.Module):
    """No BatchNorm anywhere: GroupNorm (8 groups), stride-2 convs instead of pooling, global average pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(*_gn_block(in_channels, 16), *_gn_block(16, 32, 2), *_gn_block(32, 32, 2),
                                      *_gn_block(32, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def gn_gap_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return GnGapCnn(num_classes, in_channels)


def shufflenet_1ch(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """torchvision's shufflenet_v2_x0_5 (untrained) for `in_channels`-channel inputs: only the first conv differs."""
    import torchvision.models as tvm

    model = tvm.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    old = model.conv1[0]
    model.conv1[0] = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    return model


def _bn_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCifarCnn(nn.Module):
    """Conv-BN-ReLU stages of 16, 32, 64 and 128 channels with max pooling between them, global average pooling."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(*_bn_block(in_channels, 16), nn.MaxPool2d(2), *_bn_block(16, 32), nn.MaxPool2d(2),
                                      *_bn_block(32, 64), nn.MaxPool2d(2), *_bn_block(64, 128))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def small_cifar_cnn(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return SmallCifarCnn(num_classes, in_channels)
