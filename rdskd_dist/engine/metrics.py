"""The loop's loss-term metrics: accumulated on the device, reduced once per report.

Values stay on the device between reports (no host synchronisation in the hot loop). Non-finite
values are tracked per term as the first step they appeared at; the report that reduces them
raises `NonFiniteLossError` with that step and term.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from rdskd_dist.errors import NonFiniteLossError

_NEVER = 2**62  # "no non-finite value seen"


class StepMetrics:
    """Sums and counts of named loss terms since the last report, plus each term's first bad step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.first_bad: dict[str, torch.Tensor] = {}  # kept across reports, unlike the sums
        self.samples = 0  # samples processed since the last report (for samples_per_s)

    def record(self, prefix: str, terms: dict[str, torch.Tensor], step: int) -> None:
        for name, value in terms.items():
            key = f"{prefix}/{name}"
            value = value.detach().float()
            if key not in self.sums:
                self.sums[key] = torch.zeros((), device=self.device)
                self.counts[key] = 0
            if key not in self.first_bad:
                self.first_bad[key] = torch.full((), _NEVER, device=self.device, dtype=torch.long)
            self.sums[key] += value
            self.counts[key] += 1
            first = self.first_bad[key]
            self.first_bad[key] = torch.where(~torch.isfinite(value), first.clamp(max=step), first)

    def means(self) -> dict[str, float]:
        """The mean of each term since the last report (synchronises with the device)."""
        return {k: (self.sums[k] / max(self.counts[k], 1)).item() for k in sorted(self.sums)}

    def reset(self) -> None:
        """Start a new reporting interval."""
        self.sums.clear()
        self.counts.clear()
        self.samples = 0

    def reduce(self, world_size: int, extra: torch.Tensor | None = None) -> tuple[dict[str, float], list[float]]:
        """Means over the interval (averaged over ranks) and `extra` values reduced alongside them;
        raises on the first non-finite term seen on any rank. Resets the interval."""
        keys = sorted(self.sums)
        means = torch.stack([self.sums[k] / max(self.counts[k], 1) for k in keys]) if keys else torch.zeros(0)
        if extra is not None:
            means = torch.cat([means.to(self.device), extra])
        first_bad = torch.stack([self.first_bad[k] for k in keys]) if keys else torch.zeros(0, dtype=torch.long)
        if world_size > 1 and dist.is_initialized():
            dist.all_reduce(means)
            means /= world_size
            dist.all_reduce(first_bad, op=dist.ReduceOp.MIN)
        bad = [(int(s), k) for k, s in zip(keys, first_bad.tolist()) if s < _NEVER]
        if bad:
            step, key = min(bad)
            raise NonFiniteLossError(step, key)
        values = means.tolist()
        self.reset()
        return dict(zip(keys, values)), values[len(keys):]

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "first_bad": dict(self.first_bad),
                "samples": self.samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.counts = dict(state["counts"])
        self.first_bad = {k: v.to(self.device) for k, v in state["first_bad"].items()}
        self.samples = state["samples"]
