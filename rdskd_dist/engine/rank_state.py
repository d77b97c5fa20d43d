"""The per-rank part of an engine's state in a data-parallel run (plain torch.distributed).

DDP keeps the weights and optimiser states equal on every rank, but not what each rank draws and
measures on its own: its RNGs (each rank draws its own latent noise), the method's state (e.g.
RDSKD's penalty references follow the rank's own losses) and the BN running statistics of the
generator, the student and the student's weight average (DDP broadcasts rank 0's at each wrapped
forward, then each rank updates them with its own batch; a frozen generator in eval mode uses each
rank's own). Rank 0's checkpoint carries every rank's part, as `ranks[r]`, so a resumed run continues
bit-identically on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from rdskd_dist.engine.loop import Distiller, to_device, unwrap
from rdskd_dist.engine.seeds import joining_rank_noise_seed


def _distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_initialized()


def _own_modules(engine: Distiller) -> tuple[tuple[str, torch.nn.Module], ...]:
    average = (("student_average", engine.student_average.module),) if engine.student_average is not None else ()
    return ("generator", unwrap(engine.generator)), ("student", unwrap(engine.student)), *average


def gather_rank_state(engine: Distiller, state: dict[str, Any]) -> dict[str, Any]:
    """Collective (every rank calls it): `state` plus every rank's own part, as `ranks[r]`."""
    mine = to_device({"rng": state["rng"], "method": state["method"]}, torch.device("cpu"))
    mine["buffers"] = {name: {k: v.detach().cpu().clone() for k, v in module.named_buffers()}
                       for name, module in _own_modules(engine)}
    if _distributed(engine.world_size):
        gathered: list[Any] = [None] * engine.world_size
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    return {**state, "ranks": gathered}


def load_rank_state(engine: Distiller, state: dict[str, Any]) -> None:
    """Load a checkpoint with this rank's own part; a rank the checkpoint lacks (the run has more
    workers than when it was written) gets fresh noise and keeps its buffers."""
    rank, ranks = engine.rank, state.get("ranks") or []
    own = ranks[rank] if rank < len(ranks) else {}
    if rank < len(ranks):
        state = {**state, **own}
    elif rank > 0:
        seed = joining_rank_noise_seed(engine.cfg.seed, rank, state["iteration"])
        state = {**state, "rng": {**state["rng"], "noise": torch.Generator().manual_seed(seed).get_state()}}
    engine.load_state_dict({**state, "method": to_device(state["method"], engine.device)})
    buffers = own.get("buffers", {})
    with torch.no_grad():
        for name, module in _own_modules(engine):
            saved = buffers.get(name, {})
            for key, buffer in module.named_buffers():
                if key in saved:
                    buffer.copy_(saved[key])


def share_rank0_student_buffers(engine: Distiller) -> None:
    """Collective: give every rank rank 0's BN running statistics of the student, so that a sharded
    evaluation scores the model that rank 0 saves."""
    if _distributed(engine.world_size):
        for buffer in unwrap(engine.student).buffers():
            dist.broadcast(buffer, src=0)


__all__ = ["gather_rank_state", "load_rank_state", "share_rank0_student_buffers"]
