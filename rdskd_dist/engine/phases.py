"""An opt-in split of the loop's wall time into generator, teacher and student work.

`--time-phases` turns it on. Each boundary synchronises the device (CUDA runs asynchronously,
so host clocks would otherwise charge kernels to whichever phase happens to wait for them):
it is a profiling aid, off by default, and costs nothing when off.
"""

from __future__ import annotations

import time

import torch

PHASES = ("generator", "teacher", "student")


class PhaseClock:
    """Charges the time since the previous boundary to a phase.

    generator: its forward passes, its backward pass and its optimiser step.
    teacher: the teacher's forward passes, the generator's loss terms and the backward pass from
        those losses down to the samples (for DFAD-style losses that includes the student's part
        of that backward pass).
    student: drawing its batch from a sample pool, its forward and backward passes and its
        optimiser step.
    """

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = enabled
        self._sync = torch.cuda.synchronize if enabled and device.type == "cuda" else (lambda: None)
        self._seconds = dict.fromkeys(PHASES, 0.0)
        self._last = 0.0

    def start(self) -> None:
        if self.enabled:
            self._sync()
            self._last = time.perf_counter()

    def charge(self, phase: str) -> None:
        if self.enabled:
            self._sync()
            now = time.perf_counter()
            self._seconds[phase] += now - self._last
            self._last = now

    def charge_on_gradient(self, tensor: torch.Tensor, phase: str) -> None:
        """Charge `phase` when the backward pass reaches `tensor` (the split point inside one backward)."""
        if self.enabled and tensor.requires_grad:
            tensor.register_hook(lambda grad: self.charge(phase))

    def pop(self) -> dict[str, float]:
        """Seconds per phase since the last pop, as metrics; empty when off."""
        if not self.enabled:
            return {}
        out = {f"time/{phase}_s": seconds for phase, seconds in self._seconds.items()}
        self._seconds = dict.fromkeys(PHASES, 0.0)
        return out
