"""Mixing generated samples: DFAD+AR+VI's virtual interpolation and the engine's mixup share `mix_pairs`;
the engine's CutMix (`cut_pairs`) pastes a box instead of blending (`box_mask`, shared with the window)."""

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


def cut_pairs(x: torch.Tensor, alpha: float, noise: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       torch.Tensor]:
    """CutMix (Yun et al., ICCV 2019) in pairs: each sample gets a box of x[perm] pasted in, the box's area a
    1 - Beta(alpha, alpha) share of the image, centred anywhere and clipped at the border; returns (mixed, the
    share of each sample that is still its own, perm)."""
    n, _, h, w = x.shape
    lam = beta_coefficients(n, alpha, x.device, noise)
    perm = torch.randperm(n, device=x.device, generator=noise)
    side = (1 - lam).sqrt()
    cy = torch.rand(n, device=x.device, generator=noise) * h
    cx = torch.rand(n, device=x.device, generator=noise) * w
    top, bottom = (cy - side * h / 2).round().clamp(0, h), (cy + side * h / 2).round().clamp(0, h)
    left, right = (cx - side * w / 2).round().clamp(0, w), (cx + side * w / 2).round().clamp(0, w)
    kept = 1 - ((bottom - top) * (right - left)) / (h * w)
    return torch.where(box_mask(top, bottom, left, right, (h, w)), x[perm], x), kept, perm


def box_mask(top: torch.Tensor, bottom: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
             size: tuple[int, int]) -> torch.Tensor:
    """An (n, 1, h, w) mask, true inside each sample's box [top, bottom) x [left, right) (CutMix's box, the
    engine's window augmentation)."""
    h, w = size
    rows = torch.arange(h, device=top.device)[None, :]
    cols = torch.arange(w, device=top.device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < right[:, None])
    return (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
