"""Loss terms shared by the methods (all computed in fp32, whatever the autocast dtype)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def onehot_loss(logits: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Authenticity: cross-entropy of the teacher's logits against their own argmax, or (`balanced`) against
    a near-even split of the batch over the classes (`balanced_targets`)."""
    logits = logits.float()
    return F.cross_entropy(logits, balanced_targets(logits) if balanced else logits.argmax(dim=1))


@torch.no_grad()
def balanced_targets(logits: torch.Tensor, iters: int = 10) -> torch.Tensor:
    """Each sample's class under an (almost) equal share of the batch per class, chosen to keep the teacher's
    own preferences where it can: Sinkhorn-Knopp equipartition of the teacher's probabilities, then each row's
    largest entry (the assignment SwAV uses for its codes, Caron et al., 2020). A batch the teacher puts in
    one class is split over all classes by what each sample is second-most like, so the one-hot term pulls
    toward class diversity instead of against it, whatever the diversity term's weight."""
    log_q = torch.log_softmax(logits.float(), dim=1)  # batch x classes, in the log domain: no class underflows
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True)  # every class the same mass
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)  # every sample the same mass
    return log_q.argmax(dim=1)


def info_entropy_loss(logits: torch.Tensor, base: float | None = None) -> torch.Tensor:
    """Class diversity: sum_c pbar_c log pbar_c (negative entropy of the batch-mean prediction).

    Natural log by default (RDSKD); DAFL's reference code takes log10 (`base=10`).
    """
    mean_p = F.softmax(logits.float(), dim=1).mean(dim=0)
    value = torch.special.xlogy(mean_p, mean_p).sum()
    return value / math.log(base) if base else value


def inter_sample_diversity_loss(logits: torch.Tensor, x: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """||softmax(T(x2)) - softmax(T(x1))||_F / (||x2 - x1||_F + eps) over the batch's two halves."""
    half = logits.shape[0] // 2
    p = F.softmax(logits.float(), dim=1)
    x = x.float()
    num = torch.linalg.vector_norm(p[half:2 * half] - p[:half])
    return num / (torch.linalg.vector_norm(x[half:2 * half] - x[:half]) + eps)


def activation_loss(penultimate: torch.Tensor) -> torch.Tensor:
    """DAFL's activation term: minus the mean absolute penultimate activation."""
    return -penultimate.float().abs().mean()


def _softened(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probabilities at a KD temperature, in fp32 (the same under bf16 autocast)."""
    return F.log_softmax(logits.float() / temperature, dim=1)


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """tau^2 * KL(softmax(t / tau) || softmax(s / tau)), averaged over the batch."""
    t = temperature
    log_q, log_p = _softened(student_logits, t), _softened(teacher_logits, t)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * (t * t)


def agreeing_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The KD divergence of each sample, kept only where student and teacher pick the same class, averaged over
    the batch: what an adversarial generator maximises. Samples the two already disagree on add nothing, so the
    generator is not pushed past the teacher's decision boundaries (the mask of CMI and Fast-Datafree)."""
    t = temperature
    log_q, log_p = _softened(student_logits, t), _softened(teacher_logits, t)
    per_sample = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1) * (t * t)
    agree = (student_logits.argmax(1) == teacher_logits.argmax(1)).float()
    return (per_sample * agree).mean()


def l1_logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """DFAD's discrepancy: mean absolute difference between logits."""
    return (student_logits.float() - teacher_logits.float()).abs().mean()


def activation_boundary_loss(student_pre: torch.Tensor, teacher_pre: torch.Tensor, margin: float) -> torch.Tensor:
    """Heo et al.'s activation-boundary loss, averaged over neurons and samples.

    Penalises a student pre-activation that is on the wrong side of zero (or within the
    margin of it) relative to the teacher's: (s + mu)^2 [t <= 0][s > -mu] + (s - mu)^2 [t > 0][s < mu].
    """
    s, t = student_pre.float(), teacher_pre.float().detach()
    off = (s + margin).pow(2) * ((t <= 0) & (s > -margin)) + (s - margin).pow(2) * ((t > 0) & (s < margin))
    return off.mean()


def total_variation_loss(x: torch.Tensor) -> torch.Tensor:
    """Smoothness prior on images: the mean squared difference between each pixel and its right-hand and
    lower neighbours, the two directions averaged (0 for a constant image; about 2 for unit-variance noise)."""
    x = x.float()
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    vertical = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    return (horizontal + vertical) / 2


def pixel_range_loss(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Prior that generated pixels lie where real ones can: the mean squared distance of each pixel of x
    (normalised inputs) outside [low, high], per channel (0 when every pixel is inside)."""
    x = x.float()
    return ((low - x).clamp(min=0).pow(2) + (x - high).clamp(min=0).pow(2)).mean()


class BNStatsLoss:
    """Sum over a network's BN layers of ||mu(x) - running_mean||_2 + ||var(x) - running_var||_2.

    Forward hooks record each BN input's batch statistics while `recording` is on, so that
    the teacher forward pass the method already does yields the term without a second pass.
    """

    def __init__(self, bn_layers: list[nn.modules.batchnorm._BatchNorm]):
        self.bn_layers = bn_layers
        self.recording = False
        self._terms: list[torch.Tensor] = []
        self._handles = [bn.register_forward_hook(self._hook) for bn in bn_layers]

    def _hook(self, module: nn.modules.batchnorm._BatchNorm, inputs, _output) -> None:
        if not self.recording:
            return
        x = inputs[0].float()
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self._terms.append(torch.linalg.vector_norm(mean - module.running_mean)
                           + torch.linalg.vector_norm(var - module.running_var))

    def start(self) -> None:
        self._terms.clear()
        self.recording = True

    def collect(self) -> torch.Tensor:
        self.recording = False
        total = torch.stack(self._terms).sum()
        self._terms.clear()
        return total

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
