"""The distillation engine: one loop for every method and schedule, in plain PyTorch.

Ray Train, Tune and MLflow wrap it from outside: they pass a `wrap` function for DDP, a
report callback, and restore `state_dict()`s; nothing here imports them.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import DatasetSpec, load_probe
from rdskd_dist.engine.precision import autocast, precision_for_run
from rdskd_dist.engine.health import LiveHealth
from rdskd_dist.engine.metrics import StepMetrics
from rdskd_dist.engine.samples import SampleSource, unwrap
from rdskd_dist.engine.phases import PhaseClock
from rdskd_dist.engine.seeds import later_generator_seed, noise_seed, pool_seed
from rdskd_dist.engine.schedules import generator_schedule, schedule_steps, student_schedule  # noqa: F401
from rdskd_dist.engine.result import DistillResult  # noqa: F401  (part of the loop's public face)
from rdskd_dist.engine.resolve import resolve_config
from rdskd_dist.errors import UserError
from rdskd_dist.methods import Method, Terms, get_method_class
from rdskd_dist.methods.losses import agreeing_divergence
from rdskd_dist.models import LogitsOnly, create_model

ENGINE_FORMAT = "rdskd-engine/1"
ReportCallback = Callable[[dict[str, float], Optional[dict[str, Any]]], None]


def to_device(obj: Any, device: torch.device) -> Any:
    """Checkpoints load onto the CPU; move nested tensors (e.g. penalty references) to the run's device."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


class Distiller:
    """Generator, student, optimisers, method state and counters for one distillation run."""

    def __init__(self, cfg: DistillConfig, teacher: nn.Module, spec: DatasetSpec, device: torch.device, *,
                 rank: int = 0, world_size: int = 1, wrap: Callable[[nn.Module], nn.Module] | None = None):
        spec = spec.with_input(cfg.image_size, cfg.teacher_mean, cfg.teacher_std)  # same spec if already applied
        cfg = resolve_config(cfg, spec)
        # on the machine that trains; one note per run
        cfg = cfg.model_copy(update={"precision": precision_for_run(cfg.precision, device, note=rank == 0)})
        self.cfg, self.spec, self.device = cfg, spec, device
        self.probe_data = load_probe(cfg.probe_data, spec) if cfg.probe_data is not None else None  # fails early
        self.rank, self.world_size = rank, world_size
        self.total_iterations, self.total_g_steps, self.total_s_steps = schedule_steps(cfg)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

        # Per-rank noise so that workers draw different latents.
        self.noise = torch.Generator(device=device).manual_seed(noise_seed(cfg.seed, rank))
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.teacher = teacher.to(device, memory_format=self.memory_format).eval()
        if isinstance(self.teacher, LogitsOnly):  # feature shapes at this run's input size (once)
            self.teacher.probe(spec.channels, spec.image_size)
        generator = self._new_generator()
        student = create_model(cfg.student, num_classes=spec.num_classes, in_channels=spec.channels,
                               image_size=spec.image_size)
        self.method: Method = get_method_class(cfg.method)(cfg, self.teacher, student, self.noise)
        extra = self.method.student_modules()
        self.extra = extra.to(device, memory_format=self.memory_format) if extra is not None else None
        wrap = wrap or (lambda m: m)
        self.generator = wrap(generator.to(device, memory_format=self.memory_format))
        self.student = wrap(student.to(device, memory_format=self.memory_format))

        self.opt_g = torch.optim.Adam(unwrap(self.generator).parameters(), lr=cfg.lr_generator)
        s_params = list(unwrap(self.student).parameters()) + (list(self.extra.parameters()) if self.extra else [])
        if cfg.student_optimizer == "sgd":
            self.opt_s = torch.optim.SGD(s_params, lr=cfg.lr_student, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        else:
            # fused: one kernel over all of the student's tensors. A LeNet student's step is small enough for the
            # per-tensor update to show (Adam's step 6.0% of a step at batch 64 on a 2-core CPU, 3.4% fused;
            # docs/results/student_step_profile.md)
            self.opt_s = torch.optim.Adam(s_params, lr=cfg.lr_student, weight_decay=cfg.weight_decay,
                                          fused=device.type in ("cpu", "cuda") or None)
        self.sched_g = generator_schedule(self.opt_g, cfg, self.total_g_steps)
        self.sched_s = student_schedule(self.opt_s, cfg, self.total_s_steps)
        # Polyak/EMA averaging smooths the last steps' noise out of the weights (the same on every rank under DDP)
        self.student_average = (AveragedModel(unwrap(self.student), multi_avg_fn=get_ema_multi_avg_fn(cfg.student_ema),
                                              use_buffers=True) if cfg.student_ema else None)

        self.clock = PhaseClock(device, cfg.time_phases)
        self.samples = SampleSource(cfg, self.method, self.generator, self.student, self.noise, self.clock,
                                    self.memory_format, pool_seed=pool_seed(cfg.seed, rank))
        # stage-1 step before which pool slice k - 1 is drawn from the generator so far -> k (generators > 1 or
        # pool_snapshots > 1); with generators > 1 the next generator starts there, freshly initialised
        slices = self.samples.slices
        self.slice_starts = {round(k * cfg.generator_steps / slices): k for k in range(1, slices)}
        self.generator_starts = self.slice_starts if cfg.generators > 1 else {}
        self.iteration = self.g_step = self.s_step = 0
        self.train_time_s = 0.0
        self.metrics = StepMetrics(device)  # loss terms since the last report, on the device
        self.live = LiveHealth(spec.num_classes, rank)  # batch_health/... at each report, one collapse warning

    def _new_generator(self) -> nn.Module:
        cfg, spec = self.cfg, self.spec
        return create_model("dafl_generator", latent_dim=cfg.latent_dim, out_channels=spec.channels,
                            image_size=spec.image_size, inner_bn_eps=cfg.generator_inner_bn_eps,
                            width=cfg.generator_width)

    def _start_next_generator(self, index: int) -> None:
        """Train a freshly initialised generator (its own seed, the same on every rank) with a fresh optimiser
        state and fresh method state, once the finished one's pool slice is kept."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(later_generator_seed(self.cfg.seed, index))
            fresh = self._new_generator()
        unwrap(self.generator).load_state_dict(fresh.state_dict())
        self.opt_g.state.clear()
        self.method.restart_generator()

    def generator_local_step(self) -> int:
        """Steps since the current generator started (what the method's schedules count)."""
        return self.g_step - max([0, *(s for s in self.generator_starts if s <= self.g_step)])

    # ---------------------------------------------------------------- steps
    def _set_student_trainable(self, trainable: bool) -> None:
        for p in unwrap(self.student).parameters():
            p.requires_grad_(trainable)

    def generator_step(self, keep: bool = True) -> tuple[torch.Tensor, Any]:
        """One generator step; its batch (the teacher's outputs on it) goes into the memory bank if `keep`."""
        cfg = self.cfg
        self.generator.train()
        self._set_student_trainable(False)  # the student is only a function of x here
        with autocast(self.device, cfg.precision):
            # the losses, the bank and live health all take the view the teacher judged
            x = self.samples.generator_view(self.generator(self.samples.latents()))
            self.clock.charge("generator")
            teacher_out = self.method.teacher_forward(x, for_generator=True)
            terms = self.method.generator_loss(x, teacher_out, unwrap(self.student), self.generator_local_step())
            if cfg.w_adv and self.s_step:  # an untrained student has no weaknesses to look for
                terms["disagree"] = agreeing_divergence(unwrap(self.student)(x), teacher_out.logits,
                                                        cfg.temperature or 1.0)
                terms["total"] = terms["total"] - cfg.w_adv * terms["disagree"]
        self.clock.charge("teacher")
        self.opt_g.zero_grad(set_to_none=True)
        self.clock.charge_on_gradient(x, "teacher")  # the backward pass down to the samples
        terms["total"].backward()
        self.opt_g.step()
        self.sched_g.step()
        self.clock.charge("generator")
        self._set_student_trainable(True)
        self.g_step += 1
        self.metrics.samples += cfg.batch_size
        self.metrics.record("g", terms, self.iteration)
        self.live.observe(teacher_out)
        x, teacher_out = x.detach(), type(teacher_out)(*(t.detach() if t is not None else None for t in teacher_out))
        if keep:
            self.samples.keep(x, teacher_out)
        return x, teacher_out

    def student_step(self, x: torch.Tensor, teacher_out: Any) -> None:
        # the samples as made (or drawn from the pool), before augmentation: windows and mixes of healthy samples
        # can look collapsed to the teacher, and live health is about what the generator makes
        self.live.observe(teacher_out)
        x, teacher_out = self.samples.for_student(x, teacher_out)
        self.student.train()
        with autocast(self.device, self.cfg.precision):
            terms = self.method.student_loss(x, teacher_out, self.student)
        self.opt_s.zero_grad(set_to_none=True)
        terms["total"].backward()
        if self.extra is not None and self.world_size > 1 and dist.is_initialized():
            for p in self.extra.parameters():  # not inside DDP: average their gradients by hand
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world_size
        self.opt_s.step()
        self.sched_s.step()
        if self.student_average is not None:
            self.student_average.update_parameters(unwrap(self.student))
        self.s_step += 1
        self.metrics.samples += x.shape[0]
        self.metrics.record("s", terms, self.iteration)
        self.clock.charge("student")

    def step(self) -> None:
        """One loop iteration of the configured schedule."""
        cfg = self.cfg
        self.clock.start()
        if cfg.schedule == "two_stage":
            if self.iteration < cfg.generator_steps:
                index = self.slice_starts.get(self.iteration)
                if index:
                    self.samples.snapshot(index - 1)
                    if self.generator_starts:
                        self._start_next_generator(index)
                self.generator_step()
            elif cfg.sample_pool or cfg.memory_bank:
                self.student_step(*self.samples.pooled())
                if cfg.adversarial_every and self.s_step % cfg.adversarial_every == 0:
                    # not into the bank: the pool was built from it at the end of stage 1
                    self.samples.keep_adversarial(*self.generator_step(keep=False))
            else:
                self.student_step(*self.samples.fresh(generator_train_mode=False))
        elif cfg.schedule == "joint":
            self.student_step(*self.generator_step())
        else:  # adversarial: n student steps on fresh samples, then one generator step
            for _ in range(cfg.student_steps_per_generator_step):
                self.student_step(*self.samples.fresh(generator_train_mode=True))
            self.generator_step()
        self.iteration += 1

    # ---------------------------------------------------------------- reporting
    def _reduce_metrics(self, interval_s: float) -> dict[str, float]:
        samples = self.metrics.samples
        live = self.live.stats()  # the last batch's class fractions and confidence, reduced with the means
        metrics, live_values = self.metrics.reduce(self.world_size, live)
        if live is not None:
            metrics.update(self.live.metrics(live_values, self.iteration))
        metrics.update({
            "iteration": self.iteration, "g_step": self.g_step, "s_step": self.s_step,
            "lr_generator": self.opt_g.param_groups[0]["lr"], "lr_student": self.opt_s.param_groups[0]["lr"],
            "samples_per_s": samples * self.world_size / max(interval_s, 1e-9),
            "train_time_s": self.train_time_s,
            **self.clock.pop(),
        })
        return metrics

    def run(self, on_report: ReportCallback | None = None) -> None:
        """Train from the current state to the end of the budget, reporting every `log_every` steps.

        `on_report(metrics, checkpoint)` gets a checkpoint (this engine's `state_dict()`) every
        `checkpoint_every` steps and at the end when checkpointing is on.
        """
        cfg = self.cfg
        interval_start = time.perf_counter()
        while self.iteration < self.total_iterations:
            self.step()
            last = self.iteration == self.total_iterations
            if self.iteration % cfg.log_every == 0 or last:
                now = time.perf_counter()
                metrics = self._reduce_metrics(now - interval_start)  # syncs with the device once
                now = time.perf_counter()
                self.train_time_s += now - interval_start
                metrics["train_time_s"] = self.train_time_s
                interval_start = now
                wants_checkpoint = cfg.checkpoint_every and (self.iteration % cfg.checkpoint_every == 0 or last)
                if on_report is not None:
                    on_report(metrics, self.state_dict() if wants_checkpoint else None)
                interval_start = time.perf_counter()  # exclude callback (checkpoint I/O) time
        if self.iteration == self.total_iterations:
            self.adopt_student_average()

    def current_student(self) -> nn.Module:
        """The student as it would be evaluated now: the weights' moving average once it has any."""
        if self.student_average is not None and self.student_average.n_averaged > 0:
            return self.student_average.module
        return unwrap(self.student)

    def adopt_student_average(self) -> None:
        """At the end of the budget the average becomes the student that is evaluated, saved and registered
        (idempotent: a run resumed after its last step adopts the same average again)."""
        if self.student_average is not None and self.student_average.n_averaged > 0:
            unwrap(self.student).load_state_dict(self.student_average.module.state_dict())

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: weights, optimisers, RNGs, counters."""
        rng = {"noise": self.noise.get_state(), "torch": torch.get_rng_state(),
               "python": list(random.getstate()[1])}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": ENGINE_FORMAT,
            "config": self.cfg.model_dump(mode="json"),
            "iteration": self.iteration, "g_step": self.g_step, "s_step": self.s_step,
            "train_time_s": self.train_time_s,
            "generator": unwrap(self.generator).state_dict(), "student": unwrap(self.student).state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_s": self.opt_s.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_s": self.sched_s.state_dict(),
            "method": self.method.state_dict(), "rng": rng,
            "samples": self.samples.state_dict(), "live_health": {"warned": self.live.warned},
            "pending": self.metrics.state_dict(),
            **({"student_average": self.student_average.state_dict()} if self.student_average is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != ENGINE_FORMAT:
            raise UserError(f"not an rdskd-dist engine checkpoint (format {state.get('format')!r})")
        if state["config"]["method"] != self.cfg.method:
            raise UserError(f"checkpoint is for method {state['config']['method']!r}, not {self.cfg.method!r}")
        self.iteration, self.g_step, self.s_step = state["iteration"], state["g_step"], state["s_step"]
        self.train_time_s = state["train_time_s"]
        unwrap(self.generator).load_state_dict(state["generator"])
        unwrap(self.student).load_state_dict(state["student"])
        if self.student_average is not None and "student_average" in state:  # turned on at a resume: starts fresh
            self.student_average.load_state_dict(state["student_average"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_s.load_state_dict(state["opt_s"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_s.load_state_dict(state["sched_s"])
        self.method.load_state_dict(to_device(state["method"], self.device))
        self.samples.load_state_dict(to_device(state.get("samples") or {}, self.device))
        self.live.warned = bool((state.get("live_health") or {}).get("warned", False))
        rng = state["rng"]
        self.noise.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
        random.setstate((3, tuple(rng["python"]), None))
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.metrics.load_state_dict(state["pending"])
