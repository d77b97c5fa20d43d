"""In-memory image container shared by all loaders, plus the one resize they use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rdskd_dist.data.registry import DatasetSpec

IMAGE_SIZE = 32
_RESIZE_CHUNK = 8192  # bounds the float32 scratch memory when resizing a whole split


@dataclass
class ImageTensors:
    """A whole split kept as uint8 (4x smaller than float); normalise per batch on the target device."""

    images: torch.Tensor  # uint8, N x C x 32 x 32, contiguous
    labels: torch.Tensor  # int64, N
    spec: DatasetSpec

    def __post_init__(self) -> None:
        image_shape = (self.spec.channels, IMAGE_SIZE, IMAGE_SIZE)
        if (
            self.images.dtype != torch.uint8
            or self.images.dim() != 4
            or tuple(self.images.shape[1:]) != image_shape
        ):
            raise ValueError(
                f"{self.spec.name}: images must be uint8 N x {self.spec.channels} x 32 x 32, "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        n = self.images.shape[0]
        if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (n,):
            raise ValueError(
                f"{self.spec.name}: labels must be int64 of shape ({n},), "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def normalized(
        self,
        idx: int | slice | torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """(images[idx] / 255 - mean) / std; uint8 is moved first so the transfer stays small."""
        x = self.images if idx is None else self.images[idx]
        x = x.to(device=device).to(dtype)
        mean = torch.tensor(self.spec.mean, dtype=dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.spec.std, dtype=dtype, device=x.device).view(-1, 1, 1)
        return x.div_(255).sub_(mean).div_(std)


def resize_to_32(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W (any dtype, 0..255 scale) -> uint8 N x C x 32 x 32, like torchvision Resize(32).

    Bilinear with antialias, computed in float32 and rounded once, in chunks to bound memory.
    """
    out = torch.empty((images.shape[0], images.shape[1], IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].to(torch.float32)
        resized = F.interpolate(
            chunk, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
