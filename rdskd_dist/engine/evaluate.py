"""Test-split accuracy, sharded across ranks when distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from rdskd_dist.data import ImageTensors
from rdskd_dist.engine.precision import autocast


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ImageTensors, device: torch.device, *, batch_size: int = 1024,
                      precision: str = "fp32", channels_last: bool = False, rank: int = 0, world_size: int = 1) -> float:
    """Top-1 accuracy in percent over the whole split (each rank scores its own shard)."""
    was_training = model.training
    model.eval()
    indices = torch.arange(rank, len(data), world_size)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        x = data.normalized(idx, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            pred = model(x).argmax(dim=1)
        correct += (pred == data.labels[idx].to(device)).sum()
    if world_size > 1 and dist.is_initialized():
        dist.all_reduce(correct)
    model.train(was_training)
    return 100.0 * correct.item() / len(data)
