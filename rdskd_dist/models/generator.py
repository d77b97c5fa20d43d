"""The DAFL generator, shared by RDSKD, DAFL and DFAD."""

from __future__ import annotations

import torch
import torch.nn as nn

from rdskd_dist.errors import UserError
from rdskd_dist.models.registry import register_model


class DAFLGenerator(nn.Module):
    """z -> 128 x s/4 x s/4 -> up -> conv 128 -> up -> conv 64 -> conv C -> tanh -> BN (no affine).

    DAFL's and RDSKD's code pass 0.8 as the second positional argument of the two inner
    BatchNorms (after conv1 and conv2), which is eps, not momentum; `inner_bn_eps` reproduces
    that (the methods' reference default). The first and the final BN keep eps 1e-5.
    """

    def __init__(self, latent_dim: int = 100, out_channels: int = 1, image_size: int = 32,
                 inner_bn_eps: float = 1e-5, width: float = 1.0):
        super().__init__()
        if image_size % 4:
            raise UserError(f"generator image_size must be a multiple of 4, got {image_size}")
        self.latent_dim, self.init_size = latent_dim, image_size // 4
        c1, c2 = max(8, round(128 * width)), max(8, round(64 * width))  # width 1: the reference's 128 and 64
        self.l1 = nn.Linear(latent_dim, c1 * self.init_size**2)
        self.bn0 = nn.BatchNorm2d(c1)
        self.conv1 = nn.Sequential(nn.Conv2d(c1, c1, 3, 1, 1), nn.BatchNorm2d(c1, eps=inner_bn_eps),
                                   nn.LeakyReLU(0.2))
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3, 1, 1), nn.BatchNorm2d(c2, eps=inner_bn_eps),
                                   nn.LeakyReLU(0.2))
        self.out = nn.Sequential(nn.Conv2d(c2, out_channels, 3, 1, 1), nn.Tanh(),
                                 nn.BatchNorm2d(out_channels, affine=False))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.l1(z).view(z.shape[0], -1, self.init_size, self.init_size)
        x = self.conv1(self.up(self.bn0(x)))
        x = self.conv2(self.up(x))
        return self.out(x)


@register_model("dafl_generator", kind="generator")
def dafl_generator(latent_dim: int = 100, out_channels: int = 1, image_size: int = 32,
                   inner_bn_eps: float = 1e-5, width: float = 1.0) -> DAFLGenerator:
    return DAFLGenerator(latent_dim, out_channels, image_size, inner_bn_eps, width)
