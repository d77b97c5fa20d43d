"""A small labelled probe set the user has (`--probe-data`): scored at the end next to the health numbers.

It is never a test split and never trains anything: a few hundred labelled images tell a user without a
test set whether the student learned the teacher's task. Formats (no pickled objects in either):

- `.pt` / `.pth`: `torch.save({'images': uint8 N x C x H x W, 'labels': int64 N})`, read with
  `torch.load(weights_only=True)`;
- `.npz`: `numpy.savez(path, images=..., labels=...)`, read with `allow_pickle=False`.

Images may have any size and 1 or 3 channels: they are resized and converted once to the run's inputs
(`DatasetSpec.with_input`), like the test split. Every problem is a one-line UserError.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdskd_dist.data.registry import DatasetSpec
from rdskd_dist.data.tensors import ImageTensors, to_input
from rdskd_dist.errors import UserError
from rdskd_dist.files import safe_torch_load

PT_SUFFIXES = (".pt", ".pth")
NPZ_SUFFIX = ".npz"
MAX_PROBE_IMAGES = 100_000  # a probe set is small; this bounds memory and evaluation time


def _read(path: Path) -> dict[str, Any]:
    what = f"probe set {path}"
    suffix = path.suffix.lower()
    if suffix in PT_SUFFIXES:
        obj = safe_torch_load(path, "probe set")
        if not isinstance(obj, dict):
            raise UserError(f"{what} holds a {type(obj).__name__}, not a dict with 'images' and 'labels'")
        return obj
    if suffix == NPZ_SUFFIX:
        if not path.is_file():
            raise UserError(f"probe set file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except ValueError as exc:  # object arrays need pickle: refused
            raise UserError(f"cannot read {what}: {' '.join(str(exc).split())} (only plain numeric arrays)") from None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise UserError(f"cannot read {what}: not a valid .npz file ({type(exc).__name__})") from None
    raise UserError(f"{what}: unknown format {path.suffix or '(no suffix)'!r}; use .pt (torch.save) or .npz")


def _tensor(value: Any) -> Any:
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value


def load_probe(path: str | os.PathLike, spec: DatasetSpec) -> ImageTensors:
    """The probe set as the run's inputs (`spec`'s size, channels and normalisation)."""
    path = Path(path)
    obj = _read(path)
    what = f"probe set {path}"
    missing = [key for key in ("images", "labels") if key not in obj]
    if missing:
        raise UserError(f"{what} has no {' or '.join(map(repr, missing))}; it needs 'images' (uint8 N x C x H x W) "
                        f"and 'labels' (int64 N); found keys: {', '.join(map(str, obj)) or 'none'}")
    images, labels = _tensor(obj["images"]), _tensor(obj["labels"])
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserError(f"{what}: 'images' must be uint8 N x C x H x W (0..255), got {got}")
    n, channels = images.shape[0], images.shape[1]
    if n == 0 or min(images.shape[2:]) == 0:
        raise UserError(f"{what}: 'images' is empty {tuple(images.shape)}")
    if n > MAX_PROBE_IMAGES:
        raise UserError(f"{what}: {n} images; a probe set holds at most {MAX_PROBE_IMAGES}")
    if channels not in (1, 3):
        raise UserError(f"{what}: images have {channels} channels; 1 or 3 are supported")
    if (not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex
            or labels.dtype == torch.bool or tuple(labels.shape) != (n,)):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise UserError(f"{what}: 'labels' must be int64 of shape ({n},), one per image, got {got}")
    labels = labels.to(torch.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= spec.num_classes:
        raise UserError(f"{what}: labels span {low}..{high}, but {spec.name} has classes 0..{spec.num_classes - 1}")
    return ImageTensors(images=to_input(images, spec), labels=labels.contiguous(), spec=spec)
