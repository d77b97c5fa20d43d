"""Where the engine's batches come from: fresh generator samples, a pool, a memory bank, augmentation.

The generator step is the cost (about 20 student steps each on LeNets), so samples the run has
already produced are kept with the teacher's outputs (the memory bank), and student batches can
be shifted and mixed: the teacher relabels whatever the student sees, so augmentation never
trains on a wrong target.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdskd_dist.config import DistillConfig
from rdskd_dist.data.registry import input_spec
from rdskd_dist.engine.precision import autocast
from rdskd_dist.engine.phases import PhaseClock
from rdskd_dist.methods import Method
from rdskd_dist.methods.losses import kd_kl_loss
from rdskd_dist.methods.mixing import box_mask, cut_pairs, mix_pairs
from rdskd_dist.models.base import Features


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (calls on it skip DDP's gradient hooks)."""
    return getattr(module, "module", module)


def _cat(parts: list[Any]) -> Any:
    """Concatenate Features tuples field by field; a field missing from any part is None (a bank restored from a
    state without the teacher's features, joined by a pool that has them: the student's batches are relabelled)."""
    return type(parts[0])(*(torch.cat(f) if all(t is not None for t in f) else None for f in zip(*parts)))


def _index(out: Any, idx: torch.Tensor) -> Any:
    return type(out)(*(t[idx] if t is not None else None for t in out))


def windows_at(padded: torch.Tensor, size: tuple[int, int], dy: torch.Tensor, dx: torch.Tensor,
               mirror: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample, the h x w window of `padded` whose corner is at (dy, dx), mirrored left-right where `mirror`
    is true: one gather for the whole batch (shifts here, the teacher's crops in teacher_training.py)."""
    n, c = padded.shape[:2]
    h, w = size
    rows = (torch.arange(h, device=padded.device)[None, :] + dy[:, None])[:, None, :, None]
    cols = torch.arange(w, device=padded.device)[None, :] + dx[:, None]
    if mirror is not None:
        cols = torch.where(mirror[:, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=padded.device)[:, None, None, None]
    chans = torch.arange(c, device=padded.device)[None, :, None, None]
    return padded[batch, chans, rows, cols[:, None, None, :]]


def random_shift(x: torch.Tensor, max_shift: int, noise: torch.Generator | None, flip: bool = False) -> torch.Tensor:
    """Each sample translated by up to `max_shift` pixels in each direction (zero padding), and with `flip`
    mirrored left-right with probability 1/2 (the same gather)."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * max_shift + 1, (n,), device=x.device, generator=noise)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), device=x.device, generator=noise)
    mirror = torch.rand(n, device=x.device, generator=noise) < 0.5 if flip else None
    return windows_at(F.pad(x, (max_shift,) * 4), (h, w), dy, dx, mirror)


def random_affine(x: torch.Tensor, max_degrees: float, max_scale: float, noise: torch.Generator | None,
                  scale_centre: float = 1.0) -> torch.Tensor:
    """Each sample rotated by up to `max_degrees` and scaled by a factor in [scale_centre - max_scale,
    scale_centre + max_scale] about its centre (bilinear)."""
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device, generator=noise) * 2 - 1) * max_degrees * torch.pi / 180
    scale = scale_centre + (torch.rand(n, device=x.device, generator=noise) * 2 - 1) * max_scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # the grid maps output to input: inverse
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # generated images are BN-normalised (background is not 0): the edge value fills what comes in
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_window(x: torch.Tensor, min_side: float, background: torch.Tensor,
                  noise: torch.Generator | None) -> torch.Tensor:
    """Each sample keeps one random square window, its side a fraction in [min_side, 1] of the image's, and the
    rest becomes `background` (per channel). Samples that fill the image (textures from a globally pooled teacher)
    become fragments on an empty background, which is what real objects on a plain background look like."""
    n, _, h, w = x.shape
    side = min_side + (1 - min_side) * torch.rand(n, device=x.device, generator=noise)
    wh, ww = (side * h).round().clamp(min=1), (side * w).round().clamp(min=1)
    top = (torch.rand(n, device=x.device, generator=noise) * (h - wh + 1)).floor()
    left = (torch.rand(n, device=x.device, generator=noise) * (w - ww + 1)).floor()
    keep = box_mask(top, top + wh, left, left + ww, (h, w))
    return torch.where(keep, x, background.to(x.dtype).view(1, -1, 1, 1))


def toward_disagreement(x: torch.Tensor, teacher_logits: Callable[[torch.Tensor], torch.Tensor], student: nn.Module,
                        steps: int, eps: float, precision: str) -> torch.Tensor:
    """x moved by `steps` signed-gradient steps (each eps/steps, at most eps from x in max norm) that raise the
    KL divergence from the teacher's to the student's prediction: samples where the student is still wrong,
    near the teacher's decision boundaries (the idea of DFAD's adversarial generator and of adversarial belief
    matching, applied to the samples instead of the generator, so it costs LeNet passes, not generator steps)."""
    was_training = student.training
    student.eval()  # BN running statistics must not see the probing passes
    origin = x.detach().float()
    moved = origin
    try:
        for _ in range(steps):
            moved.requires_grad_(True)
            with torch.enable_grad(), autocast(x.device, precision):
                gap = kd_kl_loss(student(moved), teacher_logits(moved), 1.0)
            grad, = torch.autograd.grad(gap, moved)
            moved = (origin + (moved.detach() + eps / steps * grad.sign() - origin).clamp(-eps, eps)).detach()
    finally:
        student.train(was_training)
    return moved.to(x.dtype)


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
        return self._x[idx], _index(self._out_type(*self._out), idx)

    def state_dict(self) -> dict[str, Any]:
        x, out = (self.contents() if self._x is not None else (None, None))
        return {"x": x, "out": list(out) if out is not None else None, "next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["x"] is None:
            return
        self.size, self.next = 0, 0
        self._x = None
        self.add(state["x"], Features(*state["out"]))
        self.next = state["next"]


class SampleSource:
    """The batches of one run: fresh samples of the generator, the frozen generator's pool (plus the memory
    bank's samples), replay from the bank in joint and adversarial schedules, and augmentation."""

    def __init__(self, cfg: DistillConfig, method: Method, generator: nn.Module, student: nn.Module,
                 noise: torch.Generator, clock: PhaseClock, memory_format: torch.memory_format, pool_seed: int):
        self.cfg, self.method, self.generator, self.student = cfg, method, generator, student
        self.noise, self.clock = noise, clock
        self.memory_format, self.pool_seed = memory_format, pool_seed
        self.device = noise.device
        self.student_batch_size = cfg.student_batch_size or cfg.batch_size
        self.keep_features = method.teacher_features_for_student
        self.bank = SampleStore(cfg.memory_bank, self.keep_features) if cfg.memory_bank else None
        self.pool: tuple[torch.Tensor, Any] | None = None
        # augment_window's background: a raw pixel of 0, as the teacher sees it
        self.black = input_spec(cfg).pixel_bounds()[0].to(self.device) if cfg.augment_window else None
        self.pool_weights: torch.Tensor | None = None  # pool_balance: per-sample draw weights
        # pool slices already drawn (from earlier generators, or earlier points of stage 1), kept in checkpoints
        self.snapshots: list[tuple[torch.Tensor, Any]] = []
        self.slices = cfg.generators * cfg.pool_snapshots  # the config allows one of the two above 1
        # adversarial_every: the second stage's generator batches, all kept, drawn from with the pool
        self.adversarial = (SampleStore(cfg.student_steps // cfg.adversarial_every * cfg.batch_size, self.keep_features)
                            if cfg.adversarial_every and cfg.student_steps >= cfg.adversarial_every else None)

    def latents(self, noise: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(self.cfg.batch_size, self.cfg.latent_dim, device=self.device,
                           generator=noise or self.noise)

    def keep(self, x: torch.Tensor, teacher_out: Any) -> None:
        """Samples the run has already paid for go into the memory bank."""
        if self.bank is not None:
            self.bank.add(x, teacher_out)

    def generator_view(self, x: torch.Tensor) -> torch.Tensor:
        """What a generator step's losses judge: the generated batch, or a random shift / scale of it (both
        differentiable, so the generator learns samples whose class evidence survives them; DeepInversion's
        jitter and the crops of Fast-Datafree and CMI, applied to a generator's output)."""
        cfg = self.cfg
        if cfg.generator_augment_scale:
            x = random_affine(x, 0.0, cfg.generator_augment_scale, self.noise)
        if cfg.generator_augment_shift:
            x = random_shift(x, cfg.generator_augment_shift, self.noise)
        return x

    @torch.no_grad()
    def fresh(self, generator_train_mode: bool) -> tuple[torch.Tensor, Any]:
        generator = unwrap(self.generator).train(generator_train_mode)
        with autocast(self.device, self.cfg.precision):
            x = generator(self.latents())
            self.clock.charge("generator")
            teacher_out = self.method.teacher_forward(x, for_generator=False)
        self.clock.charge("teacher")
        self.keep(x, teacher_out)
        return x, teacher_out

    def _student_view(self, out: Any) -> Any:
        return out if self.keep_features else type(out)(out.logits, None, None)

    def _slice_sizes(self) -> list[int]:
        """Pool batches per slice: sample_pool split evenly over the generators stage 1 trains, or over the
        points of stage 1 at which its generator is sampled."""
        count, pool = self.slices, self.cfg.sample_pool
        return [pool // count + (1 if i < pool % count else 0) for i in range(count)]

    @torch.no_grad()
    def snapshot(self, index: int) -> None:
        """Draw slice `index` of the pool from the current generator (eval mode, or train mode with
        `pool_generator_mode train`); it is left in eval mode. Each slice has its own seed, so a resumed run
        rebuilds the same pool."""
        pool_noise = torch.Generator(device=self.device).manual_seed(self.pool_seed + 7 * index)
        batch_statistics = self.cfg.pool_generator_mode == "train"
        generator = unwrap(self.generator).train(batch_statistics)
        # a train-mode pass would move the running statistics: keep them as stage 1 left them
        kept = [(buffer, buffer.clone()) for buffer in generator.buffers()] if batch_statistics else []
        xs, outs = [], []
        for _ in range(self._slice_sizes()[index]):
            with autocast(self.device, self.cfg.precision):
                x = generator(self.latents(pool_noise) * self.cfg.pool_latent_std)
                self.clock.charge("generator")
                out = self.method.teacher_forward(x, for_generator=False)
            self.clock.charge("teacher")
            xs.append(x)
            outs.append(self._student_view(out))
        for buffer, value in kept:
            buffer.copy_(value)
        generator.eval()
        if xs:
            self.snapshots.append((torch.cat(xs), _cat(outs)))

    @torch.no_grad()
    def pooled(self) -> tuple[torch.Tensor, Any]:
        """A batch drawn from samples the frozen generator(s) made once (and the teacher's outputs on
        them), plus the memory bank's."""
        if self.pool is None:
            if len(self.snapshots) < self.slices and self.cfg.sample_pool:
                self.snapshot(self.slices - 1)  # the last slice, from the generator at the end of stage 1
            parts = list(self.snapshots)
            if self.bank is not None and len(self.bank):  # the samples stage 1 produced join the pool
                x, out = self.bank.contents()
                parts.append((x.to(parts[0][0].dtype) if parts else x, self._student_view(out)))
            self.pool = (torch.cat([p[0] for p in parts]), _cat([p[1] for p in parts]))
            if self.cfg.pool_balance:  # each teacher class drawn equally often, whatever the generator favoured
                labels = self.pool[1].logits.argmax(1)
                self.pool_weights = 1.0 / torch.bincount(labels)[labels].float()
        x, out = self.pool
        extra = len(self.adversarial) if self.adversarial is not None else 0
        # the second stage's batches count as samples like the pool's: their share of a batch is their share of all
        from_pool = self.student_batch_size - round(self.student_batch_size * extra / (x.shape[0] + extra))
        if self.pool_weights is not None:
            idx = torch.multinomial(self.pool_weights, from_pool, replacement=True, generator=self.noise)
        else:
            idx = torch.randint(0, x.shape[0], (from_pool,), device=self.device, generator=self.noise)
        x, out = x[idx], _index(out, idx)
        if from_pool < self.student_batch_size:
            ax, aout = self.adversarial.sample(self.student_batch_size - from_pool, self.noise)
            x, out = torch.cat([x, ax.to(x.dtype)]), _cat([out, type(out)(*(a.to(b.dtype) if a is not None else None
                                                                           for a, b in zip(aout, out)))])
        return x, out

    @torch.no_grad()
    def stored_class_counts(self, num_classes: int) -> torch.Tensor | None:
        """How many of the stored samples that student steps drew from (the pool with the memory bank and stage 2's
        batches in two-stage runs, the memory bank in joint and adversarial ones) the teacher put in each class;
        None when student steps drew from nothing stored (or the pool was not built in this process)."""
        if self.cfg.schedule == "two_stage":
            stores = [self.pool[1].logits] if self.pool is not None else []
            if stores and self.adversarial is not None and len(self.adversarial):
                stores.append(self.adversarial.contents()[1].logits)
        else:
            stores = [self.bank.contents()[1].logits] if self.bank is not None and len(self.bank) else []
        if not stores:
            return None
        return sum(torch.bincount(s.argmax(1), minlength=num_classes)[:num_classes].double() for s in stores)

    def keep_adversarial(self, x: torch.Tensor, teacher_out: Any) -> None:
        self.adversarial.add(x, self._student_view(teacher_out))

    @torch.no_grad()
    def for_student(self, x: torch.Tensor, teacher_out: Any) -> tuple[torch.Tensor, Any]:
        """The batch a student step trains on: replayed bank samples join a fresh batch (joint and
        adversarial schedules), and augmented samples are relabelled by the teacher."""
        cfg = self.cfg
        if self.bank is not None and cfg.schedule != "two_stage" and len(self.bank) > 0:
            rx, rout = self.bank.sample(self.student_batch_size, self.noise)
            x = torch.cat([x, rx.to(x.dtype)])
            teacher_out = type(teacher_out)(*(torch.cat([a, b.to(a.dtype)]) if a is not None and b is not None
                                              else None for a, b in zip(teacher_out, rout)))
        if not (cfg.augment_shift or cfg.augment_flip or cfg.augment_mixup or cfg.augment_cutmix or cfg.augment_rotate
                or cfg.augment_scale or cfg.augment_zoom or cfg.augment_window or cfg.augment_adversarial_steps):
            return x, teacher_out
        if cfg.augment_window:
            x = random_window(x, cfg.augment_window, self.black, self.noise)
        if cfg.augment_rotate or cfg.augment_scale or cfg.augment_zoom:
            # zoom in: factors in [1, 1 + z], i.e. centre 1 + z/2, half-width z/2 (exclusive with augment_scale)
            half = cfg.augment_zoom / 2 if cfg.augment_zoom else cfg.augment_scale
            x = random_affine(x, cfg.augment_rotate, half, self.noise, scale_centre=1 + cfg.augment_zoom / 2)
        if cfg.augment_shift or cfg.augment_flip:
            x = random_shift(x, cfg.augment_shift, self.noise, flip=cfg.augment_flip)
        if cfg.augment_mixup and cfg.augment_cutmix:  # each sample one of the two (timm's mixup/cutmix switch)
            use_cut = torch.rand(x.shape[0], device=x.device, generator=self.noise) < 0.5
            x = torch.where(use_cut.view(-1, 1, 1, 1), cut_pairs(x, cfg.augment_cutmix, self.noise)[0],
                            mix_pairs(x, cfg.augment_mixup, self.noise)[0])
        elif cfg.augment_mixup:
            x = mix_pairs(x, cfg.augment_mixup, self.noise)[0]
        elif cfg.augment_cutmix:
            x = cut_pairs(x, cfg.augment_cutmix, self.noise)[0]
        if cfg.augment_adversarial_steps:  # half the batch, so the student keeps seeing the samples themselves
            half = x.shape[0] // 2
            moved = toward_disagreement(x[half:], lambda v: self.method.teacher_forward(v, for_generator=False).logits,
                                        unwrap(self.student), cfg.augment_adversarial_steps,
                                        cfg.augment_adversarial_eps, cfg.precision)
            x = torch.cat([x[:half], moved])
        x = x.contiguous(memory_format=self.memory_format)
        with autocast(self.device, cfg.precision):
            teacher_out = self.method.teacher_forward(x, for_generator=False)
        self.clock.charge("teacher")
        return x, teacher_out

    def state_dict(self) -> dict[str, Any]:
        # the last slice is redrawn from the final generator, unless stage 2 has trained it further since
        earlier = self.snapshots if self.adversarial is not None else self.snapshots[:self.slices - 1]
        return {"bank": self.bank.state_dict() if self.bank is not None else None,
                "snapshots": [{"x": x, "out": list(out)} for x, out in earlier],
                "adversarial": self.adversarial.state_dict() if self.adversarial is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.bank is not None and state.get("bank") is not None:
            self.bank.load_state_dict(state["bank"])
        self.snapshots = [(s["x"], Features(*s["out"])) for s in state.get("snapshots", [])]
        if self.adversarial is not None and state.get("adversarial") is not None:
            self.adversarial.load_state_dict(state["adversarial"])
