"""Training a teacher classifier on real data (the library behind `python -m rdskd_dist.teacher` and a
sweep's `teacher_train` block). Saving and loading teacher checkpoints is `teachers.py`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt

from rdskd_dist.data import ImageTensors, input_spec, load_split
from rdskd_dist.engine.evaluate import evaluate_accuracy
from rdskd_dist.engine.precision import autocast, precision_for_run
from rdskd_dist.engine.run import resolve_device
from rdskd_dist.engine.samples import windows_at
from rdskd_dist.models import create_model


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("digits", description="dataset to train on")
    data_root: Optional[Path] = Field(None, description="folder with the dataset files (else $RDSKD_DATA_ROOT)")
    download: bool = Field(False, description="let torchvision download missing dataset files")
    arch: Optional[str] = Field(None, description="teacher architecture (default: the dataset's reference)")
    image_size: Optional[PositiveInt] = Field(
        None, description="input size, a multiple of 4 (default: the dataset's 32); images are resized to it")
    out: Path = Field(Path("teacher.pt"), description="checkpoint file to write (plus OUT.sha256)")
    epochs: PositiveInt = Field(10, description="passes over the training split")
    batch_size: PositiveInt = Field(128, description="training batch size")
    lr: PositiveFloat = Field(1e-3, description="peak learning rate (cosine decay to 0)")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam, or sgd with momentum 0.9 and nesterov")
    weight_decay: NonNegativeFloat = Field(0.0, description="weight decay")
    augment: bool = Field(True, description="random crops of the image padded by 2 (4 for 3-channel data; scaled "
                                            "with the image size from 32) and, "
                                            "for 3-channel data, horizontal flips")
    seed: int = Field(0, description="random seed")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 autocast, fp32, or auto (bf16 where the device computes it natively)")
    channels_last: bool = Field(False, description="channels_last memory format (faster convolutions on GPUs)")


def _augment(x: torch.Tensor, flip: bool, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops (and flips) of a normalised batch, on the batch's device. The offsets come from the CPU
    generator `gen` in the order they always did, so a seed gives the same crops (and teacher) on any device."""
    n, _, h, w = x.shape
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).to(x.device, non_blocking=True)
    mirror = (torch.rand(n, generator=gen) < 0.5).to(x.device, non_blocking=True) if flip else None
    return windows_at(F.pad(x, (pad, pad, pad, pad)), (h, w), dy, dx, mirror)


def train_teacher(cfg: TeacherConfig, log=print) -> tuple[torch.nn.Module, float]:
    spec = input_spec(cfg)
    train: ImageTensors = load_split(cfg.dataset, "train", cfg.data_root, cfg.download, spec=spec)
    test: ImageTensors = load_split(cfg.dataset, "test", cfg.data_root, cfg.download, spec=spec)
    device = resolve_device(cfg.device)
    cfg = cfg.model_copy(update={"precision": precision_for_run(cfg.precision, device)})
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = create_model(cfg.arch or spec.teacher_arch, num_classes=spec.num_classes, in_channels=spec.channels,
                         image_size=spec.image_size).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # The uint8 split lives on the training device once: no per-step host copy (and no sync) on a GPU.
    train = ImageTensors(train.images.to(device), train.labels.to(device), train.spec)
    steps_per_epoch = (len(train) + cfg.batch_size - 1) // cfg.batch_size
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    pad = max(1, round((4 if spec.channels == 3 else 2) * spec.image_size / 32))  # the same shift relative to the image
    for epoch in range(cfg.epochs):
        model.train()
        start, seen, loss_sum = time.perf_counter(), 0, torch.zeros((), device=device)
        order = torch.randperm(len(train), generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = train.normalized(idx, device=device)
            if cfg.augment:
                x = _augment(x, flip=spec.channels == 3, pad=pad, gen=gen)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = train.labels[idx]
            with autocast(device, cfg.precision):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)  # on the device: no sync per step
            seen += len(idx)
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss_sum.item() / seen:.4f} "
            f"({seen / (time.perf_counter() - start):.0f} img/s)")
    accuracy = evaluate_accuracy(model, test, device, precision=cfg.precision, channels_last=cfg.channels_last)
    return model.cpu(), accuracy


__all__ = ["TeacherConfig", "train_teacher"]
