"""Dataset specs: the single source of truth for class counts, shapes and normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

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


_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
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
        DatasetSpec(
            name="digits",
            num_classes=10,
            channels=1,
            image_size=32,
            # Computed once from the train split as produced by digits.load_digits_split.
            mean=(0.3049,),
            std=(0.3234,),
            teacher_arch="lenet5",
            student_arch="lenet5_half",
            latent_dim=100,
            description="scikit-learn 8x8 digits (offline), 1437/360, upscaled to 32x32",
            reference_dataset="mnist",
        ),
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
        DatasetSpec(
            name="svhn",
            num_classes=10,
            channels=3,
            image_size=32,
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.1980, 0.2010, 0.1970),
            teacher_arch="wrn40_2",
            student_arch="wrn16_1",
            latent_dim=1000,
            description="SVHN cropped digits, 73257/26032, 32x32 RGB (label 10 -> 0)",
        ),
    )
}


def list_datasets() -> list[str]:
    """Names accepted by get_spec/load_split, sorted for stable help text."""
    return sorted(_SPECS)


def input_spec(cfg: Any) -> DatasetSpec:
    """The spec a run's teacher, generator and student see: `cfg.dataset`'s, with the config's `image_size`,
    `teacher_mean` and `teacher_std` (any object with these attributes, e.g. a DistillConfig)."""
    return get_spec(cfg.dataset).with_input(getattr(cfg, "image_size", None), getattr(cfg, "teacher_mean", None),
                                            getattr(cfg, "teacher_std", None))


def get_spec(name: str) -> DatasetSpec:
    """Look up a spec; an unknown name is a user error that lists the valid names."""
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, _SPECS) from None
