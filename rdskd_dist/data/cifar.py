"""CIFAR-10 (binary or python-pickle layout) and CIFAR-100 (python layout), read without torchvision.

torchvision's readers insist on the pickle layout and its md5s; we accept either layout and
unpickle with a whitelist so a tampered batch file cannot execute code.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from rdskd_dist.data.paths import fetch, missing_error, require_root
from rdskd_dist.errors import UserError
from rdskd_dist.data.registry import DatasetSpec, register_dataset

_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS  # CIFAR-10 binary: label byte, then R, G, B planes row-major

# Exactly what is needed to rebuild numpy arrays (numpy 1.x and 2.x module names).
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)

Batch = tuple[np.ndarray, np.ndarray]  # uint8 N x 3 x 32 x 32, int64 N


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except the numpy array constructors in _ALLOWED_GLOBALS."""

    def __init__(self, file: IO[bytes], source: Path) -> None:
        super().__init__(file, encoding="latin1")  # the official batches were pickled by Python 2
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UserError(f"refusing to unpickle {module}.{name} in {self._source}")
        return super().find_class(module, name)


def read_binary_batch(path: Path) -> Batch:
    """One CIFAR-10 binary batch: fixed-size records of label byte + 3072 pixel bytes."""
    data = path.read_bytes()
    if not data or len(data) % _RECORD:
        raise UserError(
            f"{path}: {len(data)} bytes is not a whole number of {_RECORD}-byte CIFAR-10 records "
            "(truncated or not the binary version?)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    images = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return images, records[:, 0].astype(np.int64)


def _field(batch: dict[Any, Any], key: str, path: Path) -> Any:
    """Batches loaded with latin1 have str keys, ones re-pickled from encoding='bytes' have bytes keys."""
    for candidate in (key, key.encode()):
        if candidate in batch:
            return batch[candidate]
    raise UserError(f"{path}: no {key!r} entry (not a CIFAR python batch?)")


def read_pickle_batch(path: Path, label_key: str) -> Batch:
    """One python-layout batch: dict with 'data' (N x 3072 uint8) and a list of labels."""
    try:
        with path.open("rb") as f:
            batch = _NumpyOnlyUnpickler(f, path).load()
    except UserError:
        raise
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc} (truncated or corrupt file?)") from exc
    if not isinstance(batch, dict):
        raise UserError(f"{path}: expected a dict, found {type(batch).__name__} (not a CIFAR python batch?)")
    data = _field(batch, "data", path)
    labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
        or labels.shape != (data.shape[0],)
    ):
        raise UserError(f"{path}: 'data' must be uint8 N x {_PIXELS} with N {label_key!r}")
    return np.ascontiguousarray(data).reshape(-1, 3, 32, 32), labels


@dataclass(frozen=True)
class _Layout:
    """One on-disk variant: its folder name, batch files per split, and how to read a batch."""

    subdir: str
    files: dict[str, tuple[str, ...]]
    read: Callable[[Path], Batch]


_CIFAR10_LAYOUTS = (
    _Layout(
        "cifar-10-batches-bin",
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        read_binary_batch,
    ),
    _Layout(
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        functools.partial(read_pickle_batch, label_key="labels"),
    ),
)
_CIFAR100_LAYOUTS = (
    _Layout(
        "cifar-100-python",
        {"train": ("train",), "test": ("test",)},
        functools.partial(read_pickle_batch, label_key="fine_labels"),
    ),
)


def _find(bases: list[Path], layouts: tuple[_Layout, ...], split: str) -> tuple[_Layout, Path] | None:
    """First folder holding every batch of the split; layouts in preference order."""
    for layout in layouts:
        for base in bases:
            directory = base / layout.subdir
            if all((directory / name).is_file() for name in layout.files[split]):
                return layout, directory
    return None


def _load(
    dataset: str,
    layouts: tuple[_Layout, ...],
    torchvision_class: str,
    split: str,
    root: Path | None,
    download: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    root = require_root(dataset, root, download, " or ".join(f"{layout.subdir}/" for layout in layouts))
    bases = [root, root / dataset]
    found = _find(bases, layouts, split)
    if found is None and download:
        import torchvision.datasets  # only needed to download; fetches the python layout

        cls = getattr(torchvision.datasets, torchvision_class)
        fetch(dataset, root, lambda: cls(str(root), train=split == "train", download=True))
        found = _find(bases, layouts, split)
    if found is None:
        raise missing_error(
            dataset,
            [(", ".join(layout.files[split]), [base / layout.subdir for base in bases]) for layout in layouts],
        )
    layout, directory = found
    batches = [layout.read(directory / name) for name in layout.files[split]]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_cifar10(split: str, root: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 3x32x32 images and int64 labels from cifar-10-batches-bin or cifar-10-batches-py."""
    return _load("cifar10", _CIFAR10_LAYOUTS, "CIFAR10", split, root, download)


def load_cifar100(split: str, root: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 3x32x32 images and int64 fine labels from cifar-100-python."""
    return _load("cifar100", _CIFAR100_LAYOUTS, "CIFAR100", split, root, download)


register_dataset(
    DatasetSpec(
        name="cifar10",
        num_classes=10,
        channels=3,
        image_size=32,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        teacher_arch="resnet34",
        student_arch="resnet18",
        latent_dim=1000,
        description="CIFAR-10, 50k/10k, 32x32 RGB",
    ),
    load_cifar10,
)


register_dataset(
    DatasetSpec(
        name="cifar100",
        num_classes=100,
        channels=3,
        image_size=32,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        teacher_arch="resnet34",
        student_arch="resnet18",
        latent_dim=1000,
        description="CIFAR-100 (fine labels), 50k/10k, 32x32 RGB",
    ),
    load_cifar100,
)
