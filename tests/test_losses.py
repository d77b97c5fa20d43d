"""Every loss term against values computed by hand."""

import math

import torch
import torch.nn as nn

from rdskd_dist.methods.losses import (
    BNStatsLoss,
    activation_boundary_loss,
    activation_loss,
    balanced_targets,
    info_entropy_loss,
    inter_sample_diversity_loss,
    kd_kl_loss,
    l1_logit_loss,
    onehot_loss,
    pixel_range_loss,
    total_variation_loss,
)
from rdskd_dist.methods.rdskd import ExponentialPenalty


def test_info_entropy_of_uniform_mean_prediction_is_minus_log_c():
    # Two confident samples on each of 4 classes: the batch-mean prediction is uniform.
    logits = torch.eye(4).repeat(2, 1) * 50
    assert math.isclose(info_entropy_loss(logits).item(), -math.log(4), rel_tol=1e-5)
    # All samples on one class: entropy 0.
    assert abs(info_entropy_loss(torch.tensor([[50.0, 0, 0], [50.0, 0, 0]])).item()) < 1e-6


def test_onehot_loss_is_cross_entropy_to_own_argmax():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = -0.5 * (math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.e / (math.e + 1)))
    assert math.isclose(onehot_loss(logits).item(), expected, rel_tol=1e-6)


def test_balanced_targets_split_a_collapsed_batch_and_keep_a_diverse_one():
    torch.manual_seed(0)
    collapsed = torch.randn(128, 10) + torch.tensor([20.0] + [0.0] * 9)  # the teacher says class 0 for all
    counts = torch.bincount(balanced_targets(collapsed), minlength=10)
    assert counts.min() >= 128 // 10 - 4 and counts.max() <= 128 // 10 + 4  # argmax would give [128, 0, ...]
    # each sample goes where the teacher ranks it highest once class 0 is full: second choices dominate
    second = collapsed[:, 1:].argmax(dim=1) + 1
    targets = balanced_targets(collapsed)
    assert (targets[targets != 0] == second[targets != 0]).float().mean() > 0.8
    # a batch already spread evenly keeps its argmax labels
    even = torch.eye(10).repeat(12, 1) * 10 + 0.1 * torch.randn(120, 10)
    assert torch.equal(balanced_targets(even), even.argmax(dim=1))
    # and the one-hot loss on balanced targets pulls a collapsed batch's logits toward other classes
    logits = collapsed.clone().requires_grad_(True)
    onehot_loss(logits, balanced=True).backward()
    assert logits.grad[:, 0].sum() > 0 and onehot_loss(collapsed, balanced=True) > onehot_loss(collapsed)


def test_inter_sample_diversity_ratio_of_frobenius_norms():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])  # softmax: (0.5, 0.5) and ~(1, 0)
    x = torch.zeros(2, 1, 2, 2)
    x[1] = 1.0  # ||x2 - x1||_F = 2
    p = torch.softmax(logits, dim=1)
    expected = torch.linalg.vector_norm(p[1] - p[0]).item() / 2.0
    assert math.isclose(inter_sample_diversity_loss(logits, x).item(), expected, rel_tol=1e-6)


def test_kd_kl_zero_for_equal_logits_and_tau_squared_scaling():
    t = torch.randn(5, 10)
    assert kd_kl_loss(t, t, 10.0).item() < 1e-6
    s = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0]])
    p = torch.softmax(teacher / 2, dim=1)
    q = torch.softmax(s / 2, dim=1)
    expected = 4 * (p * (p / q).log()).sum().item()
    assert math.isclose(kd_kl_loss(s, teacher, 2.0).item(), expected, rel_tol=1e-5)


def test_l1_and_activation_terms():
    assert l1_logit_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == 1.5
    assert activation_loss(torch.tensor([[-2.0, 1.0]])).item() == -1.5


def test_activation_boundary_loss_by_hand():
    # t > 0 and s < mu -> (s - mu)^2; t <= 0 and s > -mu -> (s + mu)^2; otherwise 0.
    s = torch.tensor([[0.5, 2.0, 0.2, -3.0]])
    t = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    expected = ((0.5 - 1) ** 2 + 0 + (0.2 + 1) ** 2 + 0) / 4
    assert math.isclose(activation_boundary_loss(s, t, 1.0).item(), expected, rel_tol=1e-6)


def test_exponential_penalty_scales_gradient_by_exp_of_increment():
    penalty = ExponentialPenalty("epoch", epoch=120, ema=0.9)
    penalty.reference = torch.tensor([0.3, -1.0])
    values = torch.tensor([0.8, -1.5], requires_grad=True)
    penalty(values, step=5).sum().backward()  # step 5: no refresh
    assert torch.allclose(values.grad, torch.exp(torch.tensor([0.5, -0.5])))


def test_penalty_reference_refresh_rules():
    epoch = ExponentialPenalty("epoch", epoch=4, ema=0.9)
    out0 = epoch(torch.tensor([2.0]), 0)  # r starts at 0
    assert math.isclose(out0.item(), math.exp(2.0), rel_tol=1e-6)
    out1 = epoch(torch.tensor([3.0]), 1)  # second step of the epoch: uses the old r, then r <- current
    assert math.isclose(out1.item(), math.exp(3.0), rel_tol=1e-6) and epoch.reference.item() == 3.0
    assert math.isclose(epoch(torch.tensor([5.0]), 2).item(), math.exp(2.0), rel_tol=1e-6)
    assert epoch.reference.item() == 3.0
    epoch(torch.tensor([1.0]), 5)  # step 5 is the next epoch's second step
    assert epoch.reference.item() == 1.0
    step = ExponentialPenalty("step", epoch=4, ema=0.9)
    step(torch.tensor([2.0]), 0)
    assert math.isclose(step(torch.tensor([2.5]), 1).item(), math.exp(0.5), rel_tol=1e-6)
    ema = ExponentialPenalty("ema", epoch=4, ema=0.5)
    assert ema(torch.tensor([2.0]), 0).item() == 1.0
    assert math.isclose(ema(torch.tensor([4.0]), 1).item(), math.exp(2.0), rel_tol=1e-6)
    assert ema.reference.item() == 3.0  # 0.5 * 2 + 0.5 * 4


def test_bn_statistics_term_zero_at_running_stats_and_positive_otherwise():
    bn = nn.BatchNorm2d(2).eval()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    term = BNStatsLoss([bn])
    x = 1.0 + 2.0 * torch.tensor([-1.0, 1.0]).repeat_interleave(8).view(16, 1, 1, 1).expand(16, 2, 1, 1)
    term.start()
    bn(x.contiguous())
    assert term.collect().item() < 1e-5  # batch mean 1, biased var 4
    term.start()
    bn(torch.zeros(4, 2, 3, 3))
    assert math.isclose(term.collect().item(), math.sqrt(2) + math.sqrt(2) * 4, rel_tol=1e-5)


def test_total_variation_is_zero_for_a_constant_image_and_positive_for_noise():
    assert total_variation_loss(torch.full((2, 1, 8, 8), 0.7)).item() < 1e-12
    noise = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert 1.5 < total_variation_loss(noise).item() < 2.5  # unit-variance noise: E (a - b)^2 = 2
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)  # steps of 1 along the width only
    assert math.isclose(total_variation_loss(ramp).item(), 0.5, rel_tol=1e-6)


def test_pixel_range_loss_is_zero_inside_and_squared_distance_outside():
    low, high = torch.tensor([-1.0, 0.0]).view(1, 2, 1, 1), torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    inside = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 1.5)]).unsqueeze(0)
    assert pixel_range_loss(inside, low, high).item() == 0
    outside = inside.clone()
    outside[0, 0, 0, 0] = -3.0  # 2 below channel 0's low
    outside[0, 1, 0, 0] = 2.5   # 0.5 above channel 1's high (the same value would be inside channel 0's range)
    assert math.isclose(pixel_range_loss(outside, low, high).item(), (4 + 0.25) / 32, rel_tol=1e-6)
