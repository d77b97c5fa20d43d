"""Numeric precision of a run: bf16 autocast where the hardware computes in bf16 natively, fp32 elsewhere.

bf16 autocast pays only with native bf16 arithmetic. On a CPU without it (AVX2, or AVX-512 without the BF16
extension) every bf16 op is emulated: on an AVX2 AMD EPYC the DAFL generator step at batch 128 took 8.6 s
under bf16 + channels_last against 0.82 s in fp32 + channels_last (docs/results/README.md, session 31).
`precision auto` picks per device, on the machine that trains (a cluster's workers may differ from its head).
"""

from __future__ import annotations

import contextlib
import sys

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU with bf16 support, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch.cpu's capability probes are private (torch 2.14): a torch without them counts as no native bf16
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(probe() for probe in probes if probe is not None)
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision a run computes in: `auto` becomes bf16 on native-bf16 hardware and fp32 elsewhere."""
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


def note_emulated_bf16(precision: str, device: torch.device) -> None:
    """One note line on stderr when bf16 was asked for on hardware that only emulates it."""
    if precision == "bf16" and not native_bf16(device):
        print(f"note: precision bf16 on a {device.type} without native bf16 (AVX512-BF16 or AMX) is emulated and can "
              "be several times slower than fp32 here: use --precision auto", file=sys.stderr, flush=True)


def precision_for_run(requested: str, device: torch.device, *, note: bool = True) -> str:
    """What a run on `device` computes in (`auto` resolved), with the emulated-bf16 note where `note` is set."""
    precision = resolve_precision(requested, device)
    if note:
        note_emulated_bf16(precision, device)
    return precision


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
