"""Distillation health without test data: what the teacher and the student make of fresh generated samples.

A data-free run can look fine by its losses while the generator has collapsed onto a few classes
(the student then never sees the others). After training, `generation_health` draws a few batches
from the generator in eval mode with noise of its own (a held-out seed, so the numbers do not
depend on where the training noise stream stopped) and reports:

- `class_histogram`: how many samples the teacher assigns to each class (argmax);
- `top_class_fraction`: the largest share of one class;
- `effective_classes`: exp(entropy of the histogram): the number of equally used classes that would
  give the same entropy (num_classes when balanced, 1 when every sample is one class);
- `mean_confidence`: the teacher's mean max-softmax probability;
- `agreement`: student-teacher top-1 agreement in percent;
- `collapsed`: one class holds more than half the samples, or fewer than half the classes are in effect.
- `student_effective_classes`, `student_top_class_fraction`, `student_collapsed`: the same for the student's
  own predictions on those samples. A student whose predictions collapse where the teacher's labels do not has
  not learned (dead units, a diverged optimiser): its agreement alone cannot say so, since a generator trained
  against the student makes samples it gets wrong by design.

The final generator is not always what the student learned from: with a sample pool or a memory bank the
student drew its batches from stored samples (in two-stage runs, the final generator's pool together with the
bank of stage 1's whole trajectory). Their classes, as the teacher labelled them when they were stored, give
`stored_samples`, `stored_effective_classes`, `stored_top_class_fraction`, `stored_collapsed` and
`stored_class_histogram` (no new teacher pass). A run whose final generator collapsed may still have taught
the student every class from its bank, and the warning says which of the two it is.

With several workers each rank scores its own samples and the counts are summed.

With `--probe-data` (a small labelled set the user has, `data/probe.py`), the student's and the teacher's
accuracy on it join these numbers (`probe_samples`, `probe_student_accuracy`, `probe_teacher_accuracy`),
apart from any test split.

During the run, `LiveHealth` watches the teacher's outputs on the last batch before each report (no extra
forward pass): `batch_health/effective_classes`, `batch_health/mean_confidence` and
`batch_health/top_class_fraction` join the reported metrics (and so MLflow), and the first report whose
batch looks collapsed prints one warning line; later ones stay quiet.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
import torch.distributed as dist

from rdskd_dist.engine.evaluate import evaluate_accuracy
from rdskd_dist.engine.precision import autocast
from rdskd_dist.engine.seeds import health_noise_seed

HEALTH_BATCHES = 8
HEALTH_MAX_BATCH = 256
SCALAR_KEYS = ("samples", "agreement", "effective_classes", "top_class_fraction", "mean_confidence", "collapsed",
               "student_effective_classes", "student_top_class_fraction", "student_collapsed",
               "stored_samples", "stored_effective_classes", "stored_top_class_fraction", "stored_collapsed",
               "probe_samples", "probe_student_accuracy", "probe_teacher_accuracy")
STORED_KEYS = ("samples", "effective_classes", "top_class_fraction", "collapsed", "class_histogram")
STUDENT_KEYS = ("effective_classes", "top_class_fraction", "collapsed", "class_histogram")
LIVE_PREFIX = "batch_health/"


@torch.no_grad()
def generation_health(engine: Any, batches: int = HEALTH_BATCHES) -> dict[str, Any]:
    """Health numbers of a Distiller's generator, teacher and student on fresh samples (see the module doc)."""
    from rdskd_dist.engine.loop import unwrap  # the engine imports nothing from here

    cfg, device = engine.cfg, engine.device
    generator, student, teacher = unwrap(engine.generator), unwrap(engine.student), engine.teacher
    modes = (generator.training, student.training)
    generator.eval()
    student.eval()
    noise = torch.Generator(device=device).manual_seed(health_noise_seed(cfg.seed, engine.rank))
    num_classes = engine.spec.num_classes
    histogram = torch.zeros(num_classes, dtype=torch.float64, device=device)
    student_histogram = torch.zeros_like(histogram)
    agree = torch.zeros((), dtype=torch.float64, device=device)
    confidence = torch.zeros((), dtype=torch.float64, device=device)
    batch = min(cfg.batch_size, HEALTH_MAX_BATCH)
    try:
        for _ in range(batches):
            z = torch.randn(batch, cfg.latent_dim, device=device, generator=noise)
            with autocast(device, cfg.precision):
                x = generator(z)
                t_logits = teacher(x)
                s_logits = student(x)
            t_pred = t_logits.argmax(dim=1)
            histogram += torch.bincount(t_pred, minlength=num_classes).to(histogram.dtype)
            s_pred = s_logits.argmax(dim=1)
            student_histogram += torch.bincount(s_pred, minlength=num_classes).to(histogram.dtype)
            agree += (s_pred == t_pred).sum()
            confidence += t_logits.float().softmax(dim=1).amax(dim=1).sum()
    finally:
        generator.train(modes[0])
        student.train(modes[1])
    source = getattr(engine, "samples", None)
    stored = source.stored_class_counts(num_classes) if source is not None else None
    stored = stored.to(histogram) if stored is not None else torch.zeros_like(histogram)  # every rank reduces both
    totals = torch.cat([histogram, agree.view(1), confidence.view(1), stored, student_histogram])
    if engine.world_size > 1 and dist.is_initialized():
        dist.all_reduce(totals)
    counts = totals[:num_classes].tolist()
    health = summarize(counts, agree=totals[num_classes].item(), confidence=totals[num_classes + 1].item())
    student_health = summarize(totals[2 * num_classes + 2:].tolist(), agree=0.0, confidence=0.0)
    health.update({f"student_{key}": student_health[key] for key in STUDENT_KEYS})
    stored_counts = totals[num_classes + 2:2 * num_classes + 2].tolist()
    if sum(stored_counts):
        stored_health = summarize(stored_counts, agree=0.0, confidence=0.0)
        health.update({f"stored_{key}": stored_health[key] for key in STORED_KEYS})
    probe = getattr(engine, "probe_data", None)
    if probe is not None:
        health.update(probe_scores(engine, probe))
    return health


def probe_scores(engine: Any, probe: Any) -> dict[str, Any]:
    """Student and teacher top-1 accuracy (percent) on the user's labelled probe set."""
    from rdskd_dist.engine.loop import unwrap

    cfg = engine.cfg
    kwargs = dict(batch_size=cfg.eval_batch_size, precision=cfg.precision, channels_last=cfg.channels_last,
                  rank=engine.rank, world_size=engine.world_size)
    return {"probe_samples": len(probe),
            "probe_student_accuracy": evaluate_accuracy(unwrap(engine.student), probe, engine.device, **kwargs),
            "probe_teacher_accuracy": evaluate_accuracy(engine.teacher, probe, engine.device, **kwargs)}


def result_suffix(health: dict[str, Any]) -> str:
    """The health part of the result line (empty without health numbers)."""
    out = ""
    if "agreement" in health and "effective_classes" in health:
        out += f" agree={health['agreement']:.1f}% eff_classes={health['effective_classes']:.1f}"
    if "student_effective_classes" in health:
        out += f" student_eff_classes={health['student_effective_classes']:.1f}"
    if "stored_effective_classes" in health:
        out += f" stored_eff_classes={health['stored_effective_classes']:.1f}"
    if "probe_student_accuracy" in health:
        out += (f" probe_student_acc={health['probe_student_accuracy']:.2f}%"
                f" probe_teacher_acc={health['probe_teacher_accuracy']:.2f}%")
    return out


class LiveHealth:
    """Cheap health figures at each report from the teacher's outputs on the last batch (see the module doc).

    `observe` keeps a reference (no copy, no host synchronisation); `stats` turns it into a small device
    tensor that the engine reduces with its other metrics; `metrics` names the reduced values and prints
    the collapse warning the first time a batch looks collapsed (`warned` is part of the engine's state).
    """

    def __init__(self, num_classes: int, rank: int = 0):
        self.num_classes, self.rank = num_classes, rank
        self.warned = False
        self._logits: torch.Tensor | None = None

    def observe(self, teacher_out: Any) -> None:
        logits = getattr(teacher_out, "logits", teacher_out)
        if isinstance(logits, torch.Tensor) and logits.dim() == 2:
            self._logits = logits

    @torch.no_grad()
    def stats(self) -> torch.Tensor | None:
        """[class fractions..., mean max-softmax confidence] of the last observed batch, on its device."""
        if self._logits is None:
            return None
        logits = self._logits.detach().float()
        self._logits = None
        probs = logits.softmax(dim=1)
        counts = torch.bincount(probs.argmax(dim=1), minlength=self.num_classes)[:self.num_classes]
        return torch.cat([counts.float() / max(logits.shape[0], 1), probs.amax(dim=1).mean().view(1)])

    def metrics(self, values: list[float], step: int) -> dict[str, float]:
        """`batch_health/...` metrics from reduced `stats` values; warns once, at the first collapsed batch."""
        health = summarize(values[:-1], agree=0.0, confidence=0.0)
        if health["collapsed"] and not self.warned:
            self.warned = True
            if self.rank == 0:
                hist = values[:-1]
                top = max(range(len(hist)), key=hist.__getitem__)
                print(f"warning: generated samples collapsing at step {step}: class {top} holds "
                      f"{100 * health['top_class_fraction']:.0f}% of the last batch, {health['effective_classes']:.1f} "
                      f"effective classes of {len(hist)} (reported once; the final health line says how it ended)",
                      file=sys.stderr, flush=True)
        return {f"{LIVE_PREFIX}effective_classes": health["effective_classes"],
                f"{LIVE_PREFIX}top_class_fraction": health["top_class_fraction"],
                f"{LIVE_PREFIX}mean_confidence": float(values[-1])}


def summarize(counts: list[float], agree: float, confidence: float) -> dict[str, Any]:
    n = sum(counts)
    p = [c / n for c in counts if c > 0] if n else []
    effective = math.exp(-sum(q * math.log(q) for q in p)) if p else 0.0
    top = max(counts) / n if n else 0.0
    return {
        "samples": int(n),
        "agreement": 100.0 * agree / max(n, 1),
        "effective_classes": effective,
        "top_class_fraction": top,
        "mean_confidence": confidence / max(n, 1),
        "class_histogram": [int(c) for c in counts],
        "collapsed": bool(n) and (top > 0.5 or effective < len(counts) / 2),
    }


def _spread(health: dict[str, Any], prefix: str = "", what: str = "") -> str:
    hist = health[f"{prefix}class_histogram"]
    top_class = max(range(len(hist)), key=hist.__getitem__)
    what = what or f"{health[f'{prefix}samples']} {'stored' if prefix else 'fresh'} samples"
    return (f"class {top_class} holds {100 * health[f'{prefix}top_class_fraction']:.0f}% of {what}, "
            f"{health[f'{prefix}effective_classes']:.1f} effective classes of {len(hist)}")


def warn_if_collapsed(health: dict[str, Any]) -> bool:
    """One warning line on stderr when the samples the student learned from collapsed, or the final generator's
    did while the stored samples the student drew from did not, and one when the student's own predictions
    collapsed where the teacher's did not; True if anything collapsed."""
    generator, stored = bool(health.get("collapsed")), health.get("stored_collapsed")
    student = bool(health.get("student_collapsed")) and not generator  # else it only follows the teacher's labels
    advice = "try other loss weights, a longer generator stage or another seed"
    lines = []
    if stored is False and generator:  # the student drew from a pool or bank that kept every class
        lines.append(f"the final generator's samples collapsed ({_spread(health)}), but the stored samples the "
                     f"student drew from did not ({_spread(health, 'stored_')}): the student still saw the other "
                     f"classes, from the memory bank ({advice})")
    elif stored and not generator:
        lines.append(f"the stored samples the student drew from collapsed ({_spread(health, 'stored_')}) although "
                     f"the final generator's did not ({_spread(health)}); the student learns little about the other "
                     f"classes ({advice})")
    elif generator:
        also = f"; so did the stored samples the student drew from ({_spread(health, 'stored_')})" if stored else ""
        lines.append(f"generated samples collapsed: {_spread(health)}{also} (the student learns little about the "
                     f"others; {advice})")
    if student:
        predictions = f"its predictions on {health['samples']} fresh samples"
        lines.append(f"the student did not learn: {_spread(health, 'student_', predictions)}, where the teacher's "
                     f"labels are spread ({_spread(health)}): dead units or a diverged optimiser; try a lower student "
                     f"learning rate, other student loss weights or another seed")
    for line in lines:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return bool(lines)


def flat_health(health: dict[str, Any]) -> dict[str, float]:
    """The scalar health numbers as `health/<name>` metrics (Ray reports, MLflow)."""
    out = {}
    for key in SCALAR_KEYS:
        value = health.get(key)
        if isinstance(value, (bool, int, float)):
            out[f"health/{key}"] = float(value)
    return out


def health_from_flat(metrics: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `flat_health` (without the histogram, which result.json keeps)."""
    health: dict[str, Any] = {k[len("health/"):]: v for k, v in metrics.items() if k.startswith("health/")}
    return {key: scalar_kind(key)(value) if value is not None else None for key, value in health.items()}


def scalar_kind(key: str) -> type:
    """The type of a scalar health number (flat metrics carry floats): flags bool, sample counts int."""
    return bool if key.endswith("collapsed") else int if key.endswith("samples") else float
