"""In-memory image container shared by all loaders, plus the one resize and channel conversion they use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rdskd_dist.data.registry import DatasetSpec

IMAGE_SIZE = 32  # every dataset's own size; --image-size gives another (DatasetSpec.with_input)
_RESIZE_CHUNK = 8192  # bounds the float32 scratch memory when resizing a whole split


@dataclass
class ImageTensors:
    """A whole split kept as uint8 (4x smaller than float); normalise per batch on the target device."""

    images: torch.Tensor  # uint8, N x C x S x S (C and S from the spec: 32 unless --image-size), contiguous
    labels: torch.Tensor  # int64, N
    spec: DatasetSpec

    def __post_init__(self) -> None:
        size = self.spec.image_size
        image_shape = (self.spec.channels, size, size)
        if (
            self.images.dtype != torch.uint8
            or self.images.dim() != 4
            or tuple(self.images.shape[1:]) != image_shape
        ):
            raise ValueError(
                f"{self.spec.name}: images must be uint8 N x {self.spec.channels} x {size} x {size}, "
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

    def to_spec(self, spec: DatasetSpec) -> "ImageTensors":
        """The same images as inputs of `spec` (its size and channels, e.g. after `--image-size`); self if equal."""
        if spec == self.spec:
            return self
        return ImageTensors(to_input(self.images, spec), self.labels, spec)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """N x C x H x W (any dtype, 0..255 scale) -> uint8 N x C x size x size, like torchvision Resize(size).

    Bilinear with antialias, computed in float32 and rounded once, in chunks to bound memory. Images that
    already have the size are only converted to uint8 (so 32x32 datasets stay bit-identical).
    """
    if tuple(images.shape[2:]) == (size, size):
        return images if images.dtype == torch.uint8 else images.to(torch.float32).round().clamp(0, 255).to(torch.uint8)
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].to(torch.float32)
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def resize_to_32(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W (0..255 scale) -> uint8 N x C x 32 x 32 (every dataset's own size)."""
    return resize_images(images, IMAGE_SIZE)


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 N x C x H x W with C in (1, 3) -> `channels` in (1, 3): grey repeated, colour to luminance."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        luma = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        return (images.to(torch.float32) * luma).sum(dim=1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels (only 1 <-> 3)")


def to_input(images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """Images of any size (0..255 scale, 1 or 3 channels) as uint8 inputs of `spec`: its size, then its channels."""
    return convert_channels(resize_images(images, spec.image_size), spec.channels).contiguous()
