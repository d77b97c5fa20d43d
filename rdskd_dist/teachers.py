"""Teacher checkpoints: save with metadata and SHA-256, load weights-only, check against the dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rdskd_dist.data import DatasetSpec
from rdskd_dist.errors import UserError
from rdskd_dist.io import atomic_torch_save, atomic_write_text, safe_torch_load, sha256_file
from rdskd_dist.models import as_classifier, create_model_from_spec, model_spec

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


def build_from_state_dict(arch: dict[str, Any], state_dict: Any, source: str) -> nn.Module:
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f"teacher {source} is not a state_dict (a mapping of names to tensors)")
    model = create_model_from_spec(arch)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [k for k, v in state_dict.items() if k in expected and expected[k].shape != v.shape]
    if missing or unexpected or mismatched:
        problems = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
                    ((missing, "missing keys"), (unexpected, "unexpected keys"), (mismatched, "shape mismatches"))
                    if keys]
        raise UserError(f"teacher {source} does not match architecture {arch['name']}: {', '.join(problems)}")
    model.load_state_dict(state_dict)
    return model


def load_teacher(path: str | os.PathLike, spec: DatasetSpec, *, arch: str | None = None,
                 sha256: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Returns the frozen teacher in eval mode and its metadata (arch, dataset, accuracy, sha256)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"teacher file not found: {path}")
    digest = sha256_file(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise UserError(f"teacher {path} has SHA-256 {digest}, expected {sha256.lower()}; refusing it")
    obj = safe_torch_load(path, "teacher")
    if isinstance(obj, dict) and obj.get("format") == TEACHER_FORMAT:
        arch_spec = dict(obj["arch"])
        if arch is not None and arch != arch_spec["name"]:
            raise UserError(f"teacher {path} is a {arch_spec['name']}, not {arch}")
        if obj.get("dataset") not in (None, spec.name):
            raise UserError(f"teacher {path} was trained on {obj['dataset']}, not {spec.name}")
        state_dict, meta = obj["state_dict"], {"test_accuracy": obj.get("test_accuracy"), "dataset": obj.get("dataset")}
    else:
        if arch is None:
            raise UserError(f"teacher {path} is a bare state_dict: pass --teacher-arch (e.g. {spec.teacher_arch})")
        arch_spec = {"name": arch, "num_classes": spec.num_classes, "in_channels": spec.channels,
                     "image_size": spec.image_size}
        state_dict, meta = obj, {"test_accuracy": None, "dataset": None}
    _check_shapes(arch_spec, spec, str(path))
    model = build_from_state_dict(arch_spec, state_dict, str(path))
    return freeze(model), {**meta, "arch": arch_spec, "sha256": digest, "path": str(path)}


def freeze(model: nn.Module) -> nn.Module:
    model = as_classifier(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_from_module(module: nn.Module, spec: DatasetSpec) -> tuple[nn.Module, dict[str, Any]]:
    """Bring your own teacher from Python: any nn.Module returning logits for the dataset's inputs."""
    with torch.no_grad():
        was_training = module.training
        out = module.eval()(torch.zeros(2, spec.channels, spec.image_size, spec.image_size,
                                        device=next(module.parameters()).device))
        module.train(was_training)
    logits = out.logits if hasattr(out, "logits") else out
    if logits.shape[-1] != spec.num_classes:
        raise UserError(f"teacher module outputs {logits.shape[-1]} classes but dataset {spec.name} has {spec.num_classes}")
    arch = getattr(module, "spec", {"name": type(module).__name__})
    return freeze(module), {"test_accuracy": None, "dataset": None, "arch": arch, "sha256": None, "path": None}

