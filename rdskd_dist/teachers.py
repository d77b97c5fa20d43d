"""Teacher checkpoints: save with metadata and SHA-256, load weights-only, check against the dataset."""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rdskd_dist.data import DatasetSpec
from rdskd_dist.errors import UserError
from rdskd_dist.files import atomic_torch_save, atomic_write_text, safe_torch_load, sha256_file
from rdskd_dist.models import as_classifier, create_model_from_spec, model_spec
from rdskd_dist.models.base import LogitsOnly

TEACHER_FORMAT = "rdskd-teacher/1"


def save_teacher(model: nn.Module, path: str | os.PathLike, *, dataset: str, test_accuracy: float,
                 extra: dict[str, Any] | None = None) -> str:
    """Writes the checkpoint and `PATH.sha256` (sha256sum format); returns the file's SHA-256."""
    path = Path(path)
    payload = {"format": TEACHER_FORMAT, "arch": model_spec(model), "dataset": dataset,
               "test_accuracy": float(test_accuracy), "state_dict": model.state_dict(), **(extra or {})}
    atomic_torch_save(payload, path)
    digest = sha256_file(path)
    atomic_write_text(f"{digest}  {path.name}\n", path.with_name(path.name + ".sha256"))
    return digest


def _check_shapes(arch: dict[str, Any], spec: DatasetSpec, source: str) -> None:
    for key, expected in (("num_classes", spec.num_classes), ("in_channels", spec.channels)):
        if key in arch and arch[key] != expected:
            raise UserError(f"teacher {source} has {key}={arch[key]} but dataset {spec.name} has {expected}")


def build_from_state_dict(arch: dict[str, Any], state_dict: Any, source: str,
                          shape_hint: str | None = None) -> nn.Module:
    """The architecture `arch` with `state_dict` loaded; `shape_hint` replaces the error when shapes differ (the
    caller knows why they may)."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f"teacher {source} is not a state_dict (a mapping of names to tensors)")
    model = build_external(arch["name"], arch) if ":" in arch["name"] else create_model_from_spec(arch)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [k for k, v in state_dict.items() if k in expected and expected[k].shape != v.shape]
    if mismatched and shape_hint:
        raise UserError(f"teacher {source} {shape_hint}")
    if missing or unexpected or mismatched:
        problems = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
                    ((missing, "missing keys"), (unexpected, "unexpected keys"), (mismatched, "shape mismatches"))
                    if keys]
        raise UserError(f"teacher {source} does not match architecture {arch['name']}: {', '.join(problems)}")
    model.load_state_dict(state_dict)
    return model


def _first_conv_to(model: nn.Module, channels: int) -> None:
    """Replace the first Conv2d by one taking `channels` input channels (a grey dataset's 1), same otherwise."""
    for name, conv in model.named_modules():
        if isinstance(conv, nn.Conv2d):
            if conv.in_channels != channels:
                new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                conv.dilation, conv.groups if conv.groups == 1 else channels,
                                conv.bias is not None, conv.padding_mode)
                parent, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, leaf, new)
            return


def build_external(name: str, arch: dict[str, Any]) -> nn.Module:
    """A teacher architecture outside the zoo: `torchvision:NAME` or `some.module:factory`.

    torchvision models are built untrained with the dataset's `num_classes`, their first Conv2d adapted
    to the dataset's channels; a factory is called with `num_classes=` and `in_channels=` where its
    signature accepts them. Weights always come from a state_dict file loaded weights-only.
    """
    where, _, attr = name.partition(":")
    num_classes, in_channels = arch.get("num_classes"), arch.get("in_channels")
    if not where or not attr:
        raise UserError(f"teacher architecture {name!r}: use torchvision:NAME or some.module:callable")
    if where == "torchvision":
        try:
            import torchvision.models as tvm
        except ImportError:
            raise UserError(f"teacher architecture {name!r} needs torchvision, which is not installed") from None
        valid = tvm.list_models(module=tvm)
        if attr not in valid:
            raise UserError(f"unknown torchvision model {attr!r}; valid: {', '.join(valid)}")
        try:
            model = tvm.get_model(attr, weights=None, num_classes=num_classes)
        except (TypeError, ValueError) as exc:
            raise UserError(f"teacher architecture {name!r}: {exc}") from None
        if in_channels is not None:
            _first_conv_to(model, in_channels)
        return model
    try:
        factory: Any = importlib.import_module(where)
    except ImportError as exc:
        raise UserError(f"teacher architecture {name!r}: cannot import module {where!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise UserError(f"teacher architecture {name!r}: module {where!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise UserError(f"teacher architecture {name!r}: {attr!r} is not callable")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
              if v is not None and (takes_any or k in params)}
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise UserError(f"teacher architecture {name!r}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"teacher architecture {name!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_teacher(path: str | os.PathLike, spec: DatasetSpec, *, arch: str | None = None,
                 sha256: str | None = None, feature_layer: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Returns the frozen teacher in eval mode and its metadata (arch, dataset, accuracy, sha256)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"teacher file not found: {path}")
    digest = sha256_file(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise UserError(f"teacher {path} has SHA-256 {digest}, expected {sha256.lower()}; refusing it")
    obj = safe_torch_load(path, "teacher")
    saved_size = None  # the input size a checkpoint of ours records
    if isinstance(obj, dict) and obj.get("format") == TEACHER_FORMAT:
        arch_spec = dict(obj["arch"])
        if arch is not None and arch != arch_spec["name"]:
            raise UserError(f"teacher {path} is a {arch_spec['name']}, not {arch}")
        if obj.get("dataset") not in (None, spec.name):
            raise UserError(f"teacher {path} was trained on {obj['dataset']}, not {spec.name}")
        state_dict, meta = obj["state_dict"], {"test_accuracy": obj.get("test_accuracy"), "dataset": obj.get("dataset")}
        saved_size = arch_spec.get("image_size")
        if saved_size is not None and saved_size != spec.image_size:
            arch_spec["image_size"] = spec.image_size  # built for this run's inputs (--image-size)
    else:
        if arch is None:
            raise UserError(f"teacher {path} is a bare state_dict: pass --teacher-arch (e.g. {spec.teacher_arch})")
        arch_spec = {"name": arch, "num_classes": spec.num_classes, "in_channels": spec.channels,
                     "image_size": spec.image_size}
        state_dict, meta = obj, {"test_accuracy": None, "dataset": None}
    _check_shapes(arch_spec, spec, str(path))
    # a net whose weights depend on the input size (LeNet-5's conv3) says which size it was trained at
    size_hint = (None if saved_size in (None, spec.image_size) else
                 f"({arch_spec['name']}) was trained on {saved_size}x{saved_size} inputs and does not fit "
                 f"{spec.image_size}x{spec.image_size}: pass --image-size {saved_size}")
    model = build_from_state_dict(arch_spec, state_dict, str(path), shape_hint=size_hint)
    model = freeze(model, spec, feature_layer, source=f"teacher {path}")
    return model, {**meta, "arch": arch_spec, "sha256": digest, "path": str(path)}


def freeze(model: nn.Module, spec: DatasetSpec | None = None, feature_layer: str | None = None,
           source: str = "teacher") -> nn.Module:
    """The teacher in eval mode without gradients. With the dataset's spec: its logits are checked on zeros of
    the dataset's shape, and a plain module (hooked features, `LogitsOnly`) is probed once so that methods can
    size connectors to its feature widths."""
    model = as_classifier(model, feature_layer).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if spec is not None:
        _check_classes(model, spec, source)
        if isinstance(model, LogitsOnly):
            model.probe(spec.channels, spec.image_size)
    return model


def _input_note(spec: DatasetSpec) -> str:
    """Where the input shape came from, when options changed the dataset's (a hint in shape errors)."""
    from rdskd_dist.data import get_spec

    own = get_spec(spec.name)
    changed = [opt for opt, differs in (("--image-size", spec.image_size != own.image_size),
                                        ("--teacher-mean/--teacher-std", spec.channels != own.channels)) if differs]
    return f" (set by {' and '.join(changed)})" if changed else ""


def _check_classes(model: nn.Module, spec: DatasetSpec, source: str) -> None:
    param = next(model.parameters(), None)
    shape = (2, spec.channels, spec.image_size, spec.image_size)
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape, device=param.device if param is not None else None))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UserError(f"{source} fails on {spec.channels}x{spec.image_size}x{spec.image_size} inputs of dataset "
                        f"{spec.name}{_input_note(spec)}: {exc}") from None
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UserError(f"{source} does not return logits of shape (batch, classes) for "
                        f"{spec.channels}x{spec.image_size}x{spec.image_size} inputs")
    if logits.shape[-1] != spec.num_classes:
        raise UserError(f"{source} outputs {logits.shape[-1]} classes but dataset {spec.name} has {spec.num_classes}")


def teacher_from_module(module: nn.Module, spec: DatasetSpec,
                        feature_layer: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Bring your own teacher from Python: any nn.Module returning logits for the dataset's inputs."""
    inner = module.module if isinstance(module, LogitsOnly) else module
    arch = getattr(inner, "spec", {"name": type(inner).__name__})
    model = freeze(module, spec, feature_layer, source="teacher module")
    return model, {"test_accuracy": None, "dataset": None, "arch": arch, "sha256": None, "path": None}
