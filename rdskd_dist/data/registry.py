"""Dataset specs: the single source of truth for class counts, shapes and normalisation.

Each reader module (`idx.py`, `cifar.py`, `svhn.py`, `digits.py`) registers its datasets with one
`register_dataset(spec, loader)` call; `rdskd_dist.data` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rdskd_dist.errors import UnknownNameError, UserError

SIZE_MULTIPLE = 4  # the generator starts at image_size / 4 and upsamples twice by 2


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset plus the reference teacher/student/generator defaults."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    teacher_arch: str
    student_arch: str
    latent_dim: int
    description: str
    # A dataset without reference settings of its own borrows those of this one (digits: mnist).
    reference_dataset: str = ""

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std as float32 tensors of shape (1, C, 1, 1), to broadcast over image batches."""
        return tuple(torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (self.mean, self.std))

    def pixel_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw pixels 0 (black) and 1 as the teacher sees them, (p - mean) / std, each of shape (1, C, 1, 1)."""
        mean, std = self.normalization()
        return -mean / std, (1 - mean) / std

    def with_input(self, image_size: int | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> "DatasetSpec":
        """The dataset as a teacher of other inputs sees it (`--image-size`, `--teacher-mean`, `--teacher-std`).

        The number of channels is the length of mean/std; it may differ from the dataset's only as 1 <-> 3
        (grey images repeated, colour images to luminance). Everything else keeps the dataset's values, so
        applying the same options twice gives the same spec. Bad values are a one-line UserError.
        """
        if image_size is None and mean is None and std is None:
            return self
        size = self.image_size if image_size is None else int(image_size)
        if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
            raise UserError(f"image_size must be a positive multiple of {SIZE_MULTIPLE} (the generator upsamples "
                            f"twice by 2 from image_size/4), got {size}")
        given = {name: tuple(float(v) for v in values) for name, values in (("teacher_mean", mean), ("teacher_std", std))
                 if values is not None}
        if any(not values for values in given.values()):
            raise UserError(f"{', '.join(k for k, v in given.items() if not v)}: give one value per input channel")
        lengths = {len(values) for values in given.values()}
        if len(lengths) > 1:
            raise UserError(f"teacher_mean has {len(given['teacher_mean'])} values but teacher_std has "
                            f"{len(given['teacher_std'])}: give one value per input channel in each")
        channels = lengths.pop() if lengths else self.channels
        if channels not in (1, 3) and channels != self.channels:
            raise UserError(f"{self.name} images have {self.channels} channel(s); a teacher of {channels} channels "
                            "is not supported (1 or 3: grey images are repeated, colour ones turned to luminance)")
        if channels != self.channels and len(given) < 2:
            raise UserError(f"a {channels}-channel teacher on {self.name} ({self.channels} channel(s)) needs both "
                            "teacher_mean and teacher_std, one value per channel")
        mean_t, std_t = given.get("teacher_mean", self.mean), given.get("teacher_std", self.std)
        if any(not s > 0 for s in std_t):
            raise UserError(f"teacher_std values must be positive, got {', '.join(map(str, std_t))}")
        return replace(self, image_size=size, channels=channels, mean=mean_t, std=std_t)


Loader = Callable[[str, Path | None, bool], tuple[torch.Tensor, torch.Tensor]]
_SPECS: dict[str, DatasetSpec] = {}
_LOADERS: dict[str, Loader] = {}


def register_dataset(spec: DatasetSpec, loader: Loader) -> DatasetSpec:
    """One call per dataset, next to its reader: its spec and the function `load_split` calls,
    `loader(split, root, download) -> (images N x C x H x W, labels)` at the dataset's native size."""
    if spec.name in _SPECS:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    _SPECS[spec.name], _LOADERS[spec.name] = spec, loader
    return spec


def get_loader(name: str) -> Loader:
    get_spec(name)  # an unknown name is the same one-line error
    return _LOADERS[name]


def list_datasets() -> list[str]:
    """Names accepted by get_spec/load_split, sorted for stable help text."""
    return sorted(_SPECS)


def input_spec(cfg: Any) -> DatasetSpec:
    """The spec a run's teacher, generator and student see: `cfg.dataset`'s, with the config's `image_size`,
    `teacher_mean` and `teacher_std` (any object with these attributes, e.g. a DistillConfig, or a mapping with
    these keys, e.g. a run's logged config)."""
    def option(name: str) -> Any:
        return cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name, None)

    return get_spec(option("dataset")).with_input(option("image_size"), option("teacher_mean"), option("teacher_std"))


def get_spec(name: str) -> DatasetSpec:
    """Look up a spec; an unknown name is a user error that lists the valid names."""
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, _SPECS) from None
