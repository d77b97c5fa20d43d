"""Getting more student learning out of every generated sample: a memory bank and augmentation.

The generator step is the cost (about 20 student steps each on LeNets), so samples the run has
already produced are kept with the teacher's outputs, and student batches can be shifted and
mixed: the teacher relabels whatever the student sees, so augmentation never trains on a wrong
target.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, noise: torch.Generator | None) -> torch.Tensor:
    """Each sample translated by up to `max_shift` pixels in each direction (zero padding)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), device=x.device, generator=noise)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), device=x.device, generator=noise)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


class SampleStore:
    """A ring buffer of generated samples and the teacher's outputs on them (a `Features` tuple).

    Storage is allocated at the first batch; once full, the oldest samples are overwritten, so in
    joint and adversarial schedules the bank follows the moving generator.
    """

    def __init__(self, capacity: int, keep_features: bool):
        self.capacity, self.keep_features = capacity, keep_features
        self._x: torch.Tensor | None = None
        self._out: list[torch.Tensor | None] | None = None
        self._out_type: type | None = None
        self.size = self.next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, x: torch.Tensor, out: Any) -> None:
        parts = [t if (i == 0 or self.keep_features) else None for i, t in enumerate(out)]
        if self._x is None:
            self._x = x.new_empty((self.capacity, *x.shape[1:]))
            self._out = [t.new_empty((self.capacity, *t.shape[1:])) if t is not None else None for t in parts]
            self._out_type = type(out)
        n = min(x.shape[0], self.capacity)
        idx = (self.next + torch.arange(n, device=x.device)) % self.capacity
        self._x[idx] = x[:n].to(self._x.dtype)
        for store, t in zip(self._out, parts):
            if store is not None and t is not None:
                store[idx] = t[:n].to(store.dtype)
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def contents(self) -> tuple[torch.Tensor, Any]:
        return self._x[:self.size], self._out_type(*(t[:self.size] if t is not None else None for t in self._out))

    def sample(self, n: int, noise: torch.Generator | None) -> tuple[torch.Tensor, Any]:
        idx = torch.randint(0, self.size, (n,), device=self._x.device, generator=noise)
        return self._x[idx], self._out_type(*(t[idx] if t is not None else None for t in self._out))

    def state_dict(self) -> dict[str, Any]:
        x, out = (self.contents() if self._x is not None else (None, None))
        return {"x": x, "out": list(out) if out is not None else None, "next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["x"] is None:
            return
        from rdskd_dist.models.base import Features

        self.size, self.next = 0, 0
        self._x = None
        self.add(state["x"], Features(*state["out"]))
        self.next = state["next"]
