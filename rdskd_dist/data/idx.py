"""MNIST from the canonical IDX files, parsed directly so no torchvision layout or md5 is required."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from rdskd_dist.data.paths import fetch, find_first, missing_error, require_root
from rdskd_dist.errors import UserError
from rdskd_dist.data.registry import DatasetSpec, register_dataset

_IDX_UBYTE = 0x08
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (gzip or raw), rejecting bad magic and wrong lengths."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = bytearray(f.read())
        else:
            data = bytearray(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read {path}: {exc} (truncated or corrupt file?)") from exc
    header = 4 + 4 * ndim
    if len(data) < header or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or data[3] != ndim:
        raise UserError(
            f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(magic {bytes(data[:4]).hex()})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(f"{path}: truncated or corrupt: expected {expected} bytes, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _locate(dirs: list[Path], names: tuple[str, ...]) -> dict[str, Path | None]:
    return {name: find_first(dirs, (f"{name}.gz", name)) for name in names}


def load_mnist(split: str, root: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 1x28x28 images (load_split resizes them once, to 32x32 by default) and int64 labels."""
    names = _FILES[split]
    root = require_root("mnist", root, download, " and ".join(f"{n}.gz" for n in names))
    dirs = [root, root / "MNIST" / "raw", root / "mnist"]
    found = _locate(dirs, names)
    if download and None in found.values():
        from torchvision.datasets import MNIST  # only needed to download

        fetch("mnist", root, lambda: MNIST(str(root), train=split == "train", download=True))
        found = _locate(dirs, names)
    image_path, label_path = found[names[0]], found[names[1]]
    if image_path is None or label_path is None:
        missing = [f"{name}.gz (or uncompressed)" for name, path in found.items() if path is None]
        raise missing_error("mnist", [(" and ".join(missing), dirs)])
    images = read_idx(image_path, ndim=3)
    labels = read_idx(label_path, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise UserError(
            f"mnist: {image_path} has {images.shape[0]} images but {label_path} has {labels.shape[0]} labels"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


register_dataset(
    DatasetSpec(
        name="mnist",
        num_classes=10,
        channels=1,
        image_size=32,
        mean=(0.1307,),
        std=(0.3081,),
        teacher_arch="lenet5",
        student_arch="lenet5_half",
        latent_dim=100,
        description="MNIST handwritten digits, 60k/10k, 28x28 grey resized to 32x32",
    ),
    load_mnist,
)
