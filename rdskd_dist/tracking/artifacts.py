"""What a trial or a train run leaves behind, turned into MLflow artifacts.

* the student as an MLflow model (pt2, i.e. `torch.export`, with an input example and its
  signature) that `mlflow.pytorch.load_model` loads back as a working graph module; the model
  folder also carries `extra_files/student.pt` (state_dict + architecture spec: rebuilds the
  student as its own class with a weights-only load) and `extra_files/result.json`;
* `generator/generator.pt`: the generator's weights and spec, taken from the run's output folder
  (`generator.pt`) or from its final engine checkpoint (`engine.pt`, loaded weights-only);
* `samples.png`: a grid of generated samples, each titled with the teacher's predicted class.

Every file is read with `torch.load(weights_only=True)`; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from rdskd_dist.errors import UserError
from rdskd_dist.files import atomic_torch_save, safe_torch_load

GENERATOR_FORMAT = "rdskd-generator/1"
STUDENT_FORMAT = "rdskd-student/1"
MODEL_NAME = "student"  # the LoggedModel's name inside a run
GRID_SAMPLES = 64


# ---------------------------------------------------------------- finding a run's outputs

@dataclass
class RunOutputs:
    """The files one distillation wrote (any may be missing)."""

    student: Optional[Path] = None  # student.pt
    result: Optional[Path] = None  # result.json
    generator: Optional[Path] = None  # generator.pt (rdskd-generator/1) or engine.pt (rdskd-engine/1)
    history: Optional[Path] = None  # history.json (Ray Train checkpoints)

    def missing(self) -> list[str]:
        return [name for name in ("student", "result", "generator") if getattr(self, name) is None]


def _local_dir(path: Optional[str]) -> Optional[Path]:
    if not path:
        return None
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "://" in text:  # remote storage (s3://, gs://): not read back here
        return None
    p = Path(text)
    return p if p.is_dir() else None


def find_outputs(*folders: Optional[str | os.PathLike]) -> RunOutputs:
    """Look through the given folders (output folder, Ray Train run folder, final checkpoint) in order."""
    out = RunOutputs()
    for folder in folders:
        d = _local_dir(str(folder) if folder else None)
        if d is None:
            continue
        for attr, names in (("student", ("student.pt",)), ("result", ("result.json",)),
                            ("generator", ("generator.pt", "engine.pt")), ("history", ("history.json",))):
            if getattr(out, attr) is None:
                for name in names:
                    if (d / name).is_file():
                        setattr(out, attr, d / name)
                        break
    return out


# ---------------------------------------------------------------- networks from files

def load_student(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The student rebuilt as its own class from `student.pt` (weights-only), in eval mode, plus the payload."""
    from rdskd_dist.models import create_model_from_spec

    payload = safe_torch_load(path, "student")
    if not isinstance(payload, dict) or payload.get("format") != STUDENT_FORMAT or "arch" not in payload:
        raise UserError(f"{path} is not an rdskd-dist student file (format {STUDENT_FORMAT})")
    model = create_model_from_spec(dict(payload["arch"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def generator_payload(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """`{format, arch, state_dict}` of the generator, from a generator.pt or an engine checkpoint."""
    from rdskd_dist.data import input_spec

    obj = safe_torch_load(path, "generator")
    if isinstance(obj, dict) and obj.get("format") == GENERATOR_FORMAT:
        return obj
    if not isinstance(obj, dict) or "generator" not in obj:
        raise UserError(f"{path} holds no generator weights")
    cfg = obj.get("config") or config
    spec = input_spec(cfg)  # the run's inputs (--image-size, --teacher-mean/std), as the engine built it
    arch = {"name": "dafl_generator", "latent_dim": int(cfg["latent_dim"] or spec.latent_dim),
            "out_channels": spec.channels, "image_size": spec.image_size,
            "inner_bn_eps": float(cfg.get("generator_inner_bn_eps") or 1e-5),
            "width": float(cfg.get("generator_width") or 1.0)}
    return {"format": GENERATOR_FORMAT, "arch": arch, "state_dict": obj["generator"],
            "dataset": cfg["dataset"], "method": cfg.get("method"), "schedule": cfg.get("schedule")}


def build_generator(payload: dict[str, Any]) -> nn.Module:
    from rdskd_dist.models import create_model

    arch = dict(payload["arch"])
    generator = create_model(arch.pop("name"), **arch)
    generator.load_state_dict(payload["state_dict"])
    return generator


# ---------------------------------------------------------------- the sample grid

@torch.no_grad()
def sample_grid(generator: nn.Module, teacher: nn.Module, dataset: str, path: str | os.PathLike, *, title: str,
                n: int = GRID_SAMPLES, seed: int = 0, train_mode: bool = False) -> Path:
    """A PNG of `n` generated samples (torchvision make_grid), each labelled with the teacher's class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    from rdskd_dist.data import get_spec

    spec = get_spec(dataset)
    gen = torch.Generator().manual_seed(seed)
    latent_dim = generator.latent_dim if hasattr(generator, "latent_dim") else generator.spec["latent_dim"]
    z = torch.randn(n, latent_dim, generator=gen)
    generator = generator.cpu().train(train_mode)  # two-stage students saw eval-mode samples, joint ones train-mode
    x = generator(z).float()
    probs = teacher.cpu().eval()(x).float().softmax(dim=1)
    conf, label = probs.max(dim=1)
    mean, std = spec.normalization()
    images = (x * std + mean).clamp(0, 1)
    nrow = 8
    pad = 2
    grid = make_grid(images, nrow=nrow, padding=pad, pad_value=1.0)
    side = images.shape[-1] + pad
    rows = (n + nrow - 1) // nrow
    fig, ax = plt.subplots(figsize=(nrow * 1.15, rows * 1.25 + 0.9), dpi=110)
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if spec.channels == 1 else None, interpolation="nearest",
              vmin=0, vmax=1)
    for i in range(n):
        r, c = divmod(i, nrow)
        ax.text(c * side + pad + 1, r * side + pad + 1, f"{int(label[i])} {float(conf[i]):.0%}", fontsize=7,
                color="yellow", va="top", ha="left",
                bbox=dict(facecolor="black", alpha=0.55, pad=0.6, linewidth=0))
    counts = torch.bincount(label, minlength=spec.num_classes).tolist()
    spread = " ".join(f"{k}:{v}" for k, v in enumerate(counts))
    ax.set_title(f"{title}\nteacher's predicted class (confidence); classes {spread}", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- logging to a run

def log_run_files(client, run_id: str, outputs: RunOutputs, config: dict[str, Any], *, title: str,
                  teacher_path: Optional[str]) -> list[str]:
    """Log student.pt, result.json, generator/generator.pt and samples.png; returns what could not be logged."""
    problems: list[str] = []
    if outputs.student is not None:
        client.log_artifact(run_id, str(outputs.student), "student")
    if outputs.result is not None:
        client.log_artifact(run_id, str(outputs.result), "student")
    if outputs.generator is None:
        problems.append("no generator weights (neither generator.pt nor an engine checkpoint)")
        return problems
    with tempfile.TemporaryDirectory(prefix="rdskd-mlflow-") as tmp:
        payload = generator_payload(outputs.generator, config)
        atomic_torch_save(payload, Path(tmp) / "generator.pt")
        client.log_artifact(run_id, str(Path(tmp) / "generator.pt"), "generator")
        if not teacher_path or not Path(teacher_path).is_file():
            problems.append(f"teacher file not readable here ({teacher_path}): no sample grid")
            return problems
        try:
            from rdskd_dist.data import input_spec
            from rdskd_dist.teachers import load_teacher

            dataset = payload.get("dataset") or config["dataset"]
            teacher, _ = load_teacher(teacher_path, input_spec({**config, "dataset": dataset}))
            generator = build_generator(payload)
            train_mode = (payload.get("schedule") or config.get("schedule")) != "two_stage"
            png = sample_grid(generator, teacher, dataset, Path(tmp) / "samples.png", title=title,
                              train_mode=train_mode)
            client.log_artifact(run_id, str(png))
        except UserError as exc:
            problems.append(f"no sample grid: {exc}")
    return problems


def log_student_model(client, run_id: str, experiment_id: str, outputs: RunOutputs, *, step: int = 0,
                      name: str = MODEL_NAME, tags: Optional[dict[str, str]] = None,
                      params: Optional[dict[str, str]] = None) -> str:
    """Log the student as an MLflow pt2 model (a LoggedModel of the run); returns its model id.

    The LoggedModel is created, filled and marked READY with explicit client calls (no active run,
    no global tracking URI). Raises if anything is missing: the caller decides what that means.
    """
    import mlflow.pytorch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    if outputs.student is None:
        raise UserError("no student.pt to log")
    model, payload = load_student(outputs.student)
    arch = payload["arch"]
    channels, size = int(arch.get("in_channels", 1)), int(arch.get("image_size", 32))
    # A batch of 2: torch.export keeps the batch dimension dynamic (a batch of 1 would pin it).
    example = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(example)
    signature = infer_signature(example.numpy(), logits.numpy())
    logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id, tags=tags,
                                        params=params, model_type="rdskd-student")
    try:
        with tempfile.TemporaryDirectory(prefix="rdskd-model-") as tmp:
            local = Path(tmp) / "model"
            meta = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                         model_id=logged.model_id)
            extra = [str(outputs.student)] + ([str(outputs.result)] if outputs.result else [])
            mlflow.pytorch.save_model(model, str(local), mlflow_model=meta, signature=signature,
                                      input_example=example.numpy(), serialization_format="pt2",
                                      pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                                      extra_files=extra,
                                      metadata={"rdskd_arch": json.dumps(arch),
                                                "rdskd_dataset": str(payload.get("dataset"))})
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        try:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
        raise
    return logged.model_id
