"""rdskd_dist.data: every on-disk format is written here in miniature and read back."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torchvision.transforms import Resize

from rdskd_dist.data import (
    DatasetSpec,
    ImageTensors,
    get_spec,
    list_datasets,
    load_split,
    resolve_data_root,
)
from rdskd_dist.errors import UnknownNameError, UserError

REAL_DATA = Path("/work/shared/datasets")
ALL = ["cifar10", "cifar100", "digits", "mnist", "svhn"]


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RDSKD_DATA_ROOT", raising=False)


# ---------------------------------------------------------------- writers of the real formats


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: two zero bytes, type 0x08 (ubyte), ndim, big-endian int32 dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    prefix = "train" if split == "train" else "t10k"
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def cifar_images(n: int, seed: int) -> np.ndarray:
    """N x 3 x 32 x 32 uint8 with marker pixels at known channel/row/col."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    images[:, 0, 3, 5] = 200
    images[:, 1, 1, 2] = 100
    images[:, 2, 31, 0] = 50
    return images


def write_cifar_binary(directory: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    (directory / name).write_bytes(records.tobytes())


def write_cifar_pickle(path: Path, batch: dict, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=protocol)


def check_markers(data: ImageTensors) -> None:
    assert (data.images[:, 0, 3, 5] == 200).all()
    assert (data.images[:, 1, 1, 2] == 100).all()
    assert (data.images[:, 2, 31, 0] == 50).all()


# ---------------------------------------------------------------- registry


def test_list_datasets_sorted() -> None:
    assert list_datasets() == ALL


@pytest.mark.parametrize("name", ALL)
def test_specs_are_consistent(name: str) -> None:
    spec = get_spec(name)
    assert isinstance(spec, DatasetSpec) and spec.name == name
    assert spec.image_size == 32
    assert len(spec.mean) == len(spec.std) == spec.channels
    assert spec.num_classes == (100 if name == "cifar100" else 10)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_spec("imagenet")
    assert isinstance(info.value, UserError) and isinstance(info.value, KeyError)
    message = str(info.value)
    assert "imagenet" in message
    assert all(name in message for name in ALL)
    with pytest.raises(UnknownNameError):
        load_split("imagenet", "train", "/nonexistent")


def test_bad_split_is_user_error() -> None:
    with pytest.raises(UserError, match="split"):
        load_split("digits", "validation")


def test_resolve_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_root(None) is None
    monkeypatch.setenv("RDSKD_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"


# ---------------------------------------------------------------- ImageTensors


def test_normalized_matches_formula() -> None:
    spec = get_spec("cifar10")
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    data = ImageTensors(images=images, labels=torch.arange(4), spec=spec)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    expected = (images.float() / 255 - mean) / std
    assert len(data) == 4
    out = data.normalized()
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(data.normalized(slice(1, 3), device="cpu"), expected[1:3])
    torch.testing.assert_close(data.normalized(torch.tensor([3, 0])), expected[[3, 0]])
    torch.testing.assert_close(data.normalized(2), expected[2])
    assert data.normalized(dtype=torch.float64).dtype == torch.float64
    assert data.images.dtype == torch.uint8  # normalising never touches the stored images


def test_image_tensors_rejects_wrong_shapes() -> None:
    spec = get_spec("mnist")
    with pytest.raises(ValueError):
        ImageTensors(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), spec)
    with pytest.raises(ValueError):
        ImageTensors(torch.zeros(2, 1, 32, 32), torch.zeros(2, dtype=torch.int64), spec)
    with pytest.raises(ValueError):
        ImageTensors(torch.zeros(2, 1, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), spec)


# ---------------------------------------------------------------- MNIST (IDX)


@pytest.mark.parametrize("subdir", ["", "MNIST/raw", "mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_layouts(tmp_path: Path, subdir: str, gz: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    images[0] = 77  # a flat image stays flat through bilinear resizing
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_mnist(tmp_path / subdir, "test", images, labels, gz)

    data = load_split("mnist", "test", tmp_path)
    assert data.spec is get_spec("mnist")
    assert data.images.shape == (5, 1, 32, 32) and data.images.dtype == torch.uint8
    assert data.images.is_contiguous()
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [3, 1, 4, 1, 5]
    assert (data.images[0] == 77).all()
    expected = Resize(32)(torch.from_numpy(images).unsqueeze(1))
    assert torch.equal(data.images, expected)
    torch.testing.assert_close(data.normalized(0), (torch.full((1, 32, 32), 77 / 255) - 0.1307) / 0.3081)


def test_mnist_uses_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path, "train", np.zeros((2, 28, 28), np.uint8), np.array([0, 9], np.uint8), gz=True)
    monkeypatch.setenv("RDSKD_DATA_ROOT", str(tmp_path))
    assert load_split("mnist", "train").labels.tolist() == [0, 9]


def test_mnist_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_split("mnist", "train", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    for directory in (tmp_path, tmp_path / "MNIST" / "raw", tmp_path / "mnist"):
        assert str(directory) in message
    assert "--data-root" in message and "RDSKD_DATA_ROOT" in message and "--download" in message


def test_mnist_without_any_root_says_so() -> None:
    with pytest.raises(UserError) as info:
        load_split("mnist", "train")
    message = str(info.value)
    assert "RDSKD_DATA_ROOT" in message and "unset" in message and "train-images-idx3-ubyte" in message


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_truncated_file(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, "test", np.ones((4, 28, 28), np.uint8), np.arange(4, dtype=np.uint8), gz)
    path = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte"):
        load_split("mnist", "test", tmp_path)


def test_mnist_bad_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, "test", np.ones((4, 28, 28), np.uint8), np.arange(4, dtype=np.uint8), gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[2] = 0x0D  # float32 element type
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        load_split("mnist", "test", tmp_path)


def test_mnist_download_fetches_only_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[str] = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append(root)
            labels = np.array([7, 8, 9], np.uint8)
            write_mnist(Path(root) / "MNIST" / "raw", "test", np.zeros((3, 28, 28), np.uint8), labels, gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    assert load_split("mnist", "test", tmp_path, download=True).labels.tolist() == [7, 8, 9]
    assert load_split("mnist", "test", tmp_path, download=True).labels.tolist() == [7, 8, 9]
    assert calls == [str(tmp_path)]


def test_download_failure_and_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    class OfflineCIFAR10:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(UserError, match="download into .* failed: .*Temporary failure in name resolution"):
        load_split("cifar10", "train", tmp_path, download=True)
    with pytest.raises(UserError, match="--download needs a directory"):
        load_split("cifar10", "train", None, download=True)


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100


def test_cifar10_binary(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-bin"
    for i in range(1, 6):
        write_cifar_binary(directory, f"data_batch_{i}.bin", cifar_images(3, i), np.array([i, 0, 9]))
    test_images = cifar_images(4, 0)
    write_cifar_binary(directory, "test_batch.bin", test_images, np.array([2, 3, 5, 7]))

    train = load_split("cifar10", "train", tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == [1, 0, 9, 2, 0, 9, 3, 0, 9, 4, 0, 9, 5, 0, 9]
    check_markers(train)
    test = load_split("cifar10", "test", tmp_path)
    assert torch.equal(test.images, torch.from_numpy(test_images))
    assert test.labels.tolist() == [2, 3, 5, 7]
    spec = get_spec("cifar10")
    marker = test.normalized(0)[:, 3, 5]
    assert marker[0].item() == pytest.approx((200 / 255 - spec.mean[0]) / spec.std[0], rel=1e-5)


def test_cifar10_binary_truncated(tmp_path: Path) -> None:
    directory = tmp_path / "cifar10" / "cifar-10-batches-bin"
    write_cifar_binary(directory, "test_batch.bin", cifar_images(2, 0), np.array([1, 2]))
    path = directory / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="test_batch.bin"):
        load_split("cifar10", "test", tmp_path)


def test_cifar10_label_out_of_range(tmp_path: Path) -> None:
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", "test_batch.bin", cifar_images(2, 0), np.array([1, 12]))
    with pytest.raises(UserError, match="0..9"):
        load_split("cifar10", "test", tmp_path)


@pytest.mark.parametrize("key_type", [str, bytes])
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5])
def test_cifar10_python_pickle(tmp_path: Path, key_type: type, protocol: int) -> None:
    def key(name: str) -> str | bytes:
        return name if key_type is str else name.encode()

    directory = tmp_path / "cifar10" / "cifar-10-batches-py"
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        images = cifar_images(2, i)
        batch = {key("batch_label"): "batch", key("data"): images.reshape(2, -1), key("labels"): [i, 9 - i],
                 key("filenames"): ["a.png", "b.png"]}
        write_cifar_pickle(directory / name, batch, protocol)

    train = load_split("cifar10", "train", tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    check_markers(train)
    test = load_split("cifar10", "test", tmp_path)
    assert torch.equal(test.images, torch.from_numpy(cifar_images(2, 5)))
    assert test.labels.tolist() == [5, 4]


def test_cifar10_prefers_complete_layout_and_lists_both_when_missing(tmp_path: Path) -> None:
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", "data_batch_1.bin", cifar_images(1, 0), np.array([1]))
    with pytest.raises(UserError) as info:
        load_split("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "data_batch_5.bin" in message and "data_batch_5," not in message.split(" or ")[0]
    for sub in ("cifar-10-batches-bin", "cifar-10-batches-py"):
        assert str(tmp_path / sub) in message and str(tmp_path / "cifar10" / sub) in message
    assert "--data-root" in message and "\n" not in message


class _Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.target}",))


def test_cifar_pickle_refuses_non_numpy_globals(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_cifar_pickle(path, {"data": _Exploit(target), "labels": [0]})
    with pytest.raises(UserError, match=r"refusing to unpickle (posix|nt|os)\.system in .*test_batch"):
        load_split("cifar10", "test", tmp_path)
    assert not target.exists()


def test_cifar_pickle_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_cifar_pickle(path, {"data": cifar_images(2, 0).reshape(2, -1), "labels": [0, 1]})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="test_batch"):
        load_split("cifar10", "test", tmp_path)


def test_cifar100_python(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-100-python"
    for name, n in (("train", 6), ("test", 3)):
        batch = {"data": cifar_images(n, n).reshape(n, -1), "fine_labels": list(range(99, 99 - n, -1)),
                 "coarse_labels": [0] * n, "filenames": ["x.png"] * n}
        write_cifar_pickle(directory / name, batch)
    train = load_split("cifar100", "train", tmp_path)
    assert train.images.shape == (6, 3, 32, 32) and train.labels.tolist() == [99, 98, 97, 96, 95, 94]
    check_markers(train)
    test = load_split("cifar100", "test", tmp_path)
    assert len(test) == 3 and test.spec.num_classes == 100


def test_cifar100_missing_message(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_split("cifar100", "test", tmp_path)
    message = str(info.value)
    assert message.startswith("cifar100: missing test in ")
    assert str(tmp_path / "cifar-100-python") in message and str(tmp_path / "cifar100" / "cifar-100-python") in message


# ---------------------------------------------------------------- SVHN


@pytest.mark.parametrize("subdir", ["", "svhn"])
def test_svhn_mat(tmp_path: Path, subdir: str) -> None:
    n = 4
    x = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    x[3, 5, 0, :] = 200  # row 3, col 5, red
    x[31, 0, 2, 1] = 50  # row 31, col 0, blue, image 1
    y = np.array([[10], [1], [9], [10]], dtype=np.uint8)
    (tmp_path / subdir).mkdir(exist_ok=True)
    scipy.io.savemat(tmp_path / subdir / "train_32x32.mat", {"X": x, "y": y})

    data = load_split("svhn", "train", tmp_path)
    assert data.images.shape == (n, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.images.is_contiguous()
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [0, 1, 9, 0]
    assert (data.images[:, 0, 3, 5] == 200).all() and data.images[1, 2, 31, 0] == 50
    assert torch.equal(data.images, torch.from_numpy(x).permute(3, 2, 0, 1))


def test_svhn_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_split("svhn", "test", tmp_path)
    assert "test_32x32.mat" in str(info.value) and str(tmp_path / "svhn") in str(info.value)
    path = tmp_path / "test_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 8), np.uint8), "y": np.ones((8, 1), np.uint8)})
    full = path.read_bytes()
    for damaged in (full[: len(full) // 2], full[:50]):
        path.write_bytes(damaged)
        with pytest.raises(UserError, match="test_32x32.mat"):
            load_split("svhn", "test", tmp_path)
    scipy.io.savemat(path, {"images": np.zeros((2, 2), np.uint8)})
    with pytest.raises(UserError, match="not an SVHN file"):
        load_split("svhn", "test", tmp_path)


# ---------------------------------------------------------------- digits (bundled with scikit-learn)


def test_digits_split_sizes_and_determinism(tmp_path: Path) -> None:
    train = load_split("digits", "train", root=tmp_path)  # root is ignored
    test = load_split("digits", "test")
    assert len(train) == 1437 and len(test) == 360
    assert train.images.shape == (1437, 1, 32, 32) and train.images.dtype == torch.uint8
    assert set(train.labels.tolist()) == set(range(10)) and set(test.labels.tolist()) <= set(range(10))
    assert train.images.max() == 255 and train.images.min() == 0
    again = load_split("digits", "train")
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    pixels = train.images.double() / 255
    assert pixels.mean().item() == pytest.approx(train.spec.mean[0], abs=1e-3)
    assert pixels.std().item() == pytest.approx(train.spec.std[0], abs=1e-3)


# ---------------------------------------------------------------- the real files, when present


@pytest.mark.skipif(not (REAL_DATA / "mnist").is_dir(), reason="no real MNIST here")
def test_real_mnist() -> None:
    for split, n in (("train", 60000), ("test", 10000)):
        data = load_split("mnist", split, REAL_DATA / "mnist")
        assert data.images.shape == (n, 1, 32, 32)
        assert int(data.labels.min()) == 0 and int(data.labels.max()) == 9


@pytest.mark.skipif(not (REAL_DATA / "cifar10").is_dir(), reason="no real CIFAR-10 here")
def test_real_cifar10_binary() -> None:
    for split, n in (("train", 50000), ("test", 10000)):
        data = load_split("cifar10", split, REAL_DATA)
        assert data.images.shape == (n, 3, 32, 32)
        assert torch.bincount(data.labels, minlength=10).tolist() == [n // 10] * 10
    pixels = data.images.double() / 255
    torch.testing.assert_close(pixels.mean((0, 2, 3)), torch.tensor(data.spec.mean, dtype=torch.float64),
                               atol=0.01, rtol=0)
