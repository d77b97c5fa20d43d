"""Dataset specs: the single source of truth for class counts, shapes and normalisation."""

from __future__ import annotations

from dataclasses import dataclass

from rdskd_dist.errors import UnknownNameError


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


def get_spec(name: str) -> DatasetSpec:
    """Look up a spec; an unknown name is a user error that lists the valid names."""
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, _SPECS) from None
