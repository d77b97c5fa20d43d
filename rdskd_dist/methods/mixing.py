"""Mixing generated samples: DFAD+AR+VI's virtual interpolation and the engine's mixup share it."""

from __future__ import annotations

import torch


def beta_coefficients(n: int, alpha: float, device: torch.device, noise: torch.Generator | None) -> torch.Tensor:
    """n draws of Beta(alpha, alpha), from two Gammas on the caller's generator (so resume is exact)."""
    a = torch.full((n,), float(alpha), device=device)
    g1, g2 = torch._standard_gamma(a, generator=noise), torch._standard_gamma(a, generator=noise)
    return g1 / (g1 + g2)


def mix_pairs(x: torch.Tensor, alpha: float, noise: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       torch.Tensor]:
    """lam * x + (1 - lam) * x[perm] per sample; returns (mixed, lam, perm)."""
    n = x.shape[0]
    lam = beta_coefficients(n, alpha, x.device, noise)
    perm = torch.randperm(n, device=x.device, generator=noise)
    lam_x = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return lam_x * x + (1 - lam_x) * x[perm], lam, perm
