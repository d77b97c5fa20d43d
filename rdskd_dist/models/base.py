"""What every classifier exposes to the distillation methods."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn as nn


class Features(NamedTuple):
    logits: torch.Tensor
    penultimate: torch.Tensor  # input of the final linear layer
    preact: torch.Tensor  # a late pre-activation feature map (activation-boundary regulariser)
    trunk: Optional[torch.Tensor] = None  # flattened conv-trunk output (DAFL's `feature`; pooled for ResNets)


class Classifier(nn.Module):
    """A classifier with `forward(x) -> logits` and `forward(x, features=True) -> Features`.

    Features go through `forward` (not a separate method) so that a DDP wrapper, which only
    hooks `forward`, still synchronises gradients when a method needs them.

    `penultimate_dim` and `preact_channels` let a method size connector layers between
    a student and a teacher of different widths.
    """

    penultimate_dim: int
    preact_channels: int
    preact_spatial: bool  # preact is a feature map (N, C, H, W) rather than a vector

    def forward_features(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, features: bool = False):
        out = self.forward_features(x)
        return out if features else out.logits

    def bn_layers(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class LogitsOnly(nn.Module):
    """Adapts a user's plain `nn.Module` teacher (logits only) to the Features interface."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, features: bool = False):
        logits = self.module(x)
        return Features(logits, None, None) if features else logits  # type: ignore[arg-type]

    def bn_layers(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def as_classifier(module: nn.Module) -> nn.Module:
    return module if isinstance(module, (Classifier, LogitsOnly)) else LogitsOnly(module)
