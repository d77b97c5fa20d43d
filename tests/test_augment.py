"""The memory bank and student-side augmentation (engine options for short budgets)."""

from __future__ import annotations

import pytest
import torch

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec
from rdskd_dist.engine import Distiller
from rdskd_dist.engine.samples import SampleStore, random_affine, random_shift, random_window
from rdskd_dist.models.base import Features
from rdskd_dist.teachers import load_teacher


def next_student_batch(engine: Distiller) -> tuple[torch.Tensor, torch.Tensor]:
    """One more engine step; the samples its student step trained on and the teacher logits it was given."""
    seen = []
    original = engine.method.student_loss
    engine.method.student_loss = lambda x, out, student: (seen.append((x, out.logits)), original(x, out, student))[1]
    engine.step()
    return seen[0]


def test_random_shift_moves_each_sample_within_the_bound():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    ys, xs = torch.nonzero(out[:, 0] == 1.0, as_tuple=True)[1:]
    assert out.shape == x.shape and out.sum() == 64  # nothing lost: the bright pixel stays inside
    assert ((ys - 4).abs() <= 2).all() and ((xs - 4).abs() <= 2).all()
    assert len({(int(a), int(b)) for a, b in zip(ys, xs)}) > 5  # samples move independently


def test_random_flip_mirrors_about_half_the_samples_and_nothing_else():
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(200, 1, 1, 1)
    out = random_shift(x, 0, torch.Generator().manual_seed(0), flip=True)
    mirrored = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    assert all(torch.equal(o, x[0]) or m for o, m in zip(out, mirrored))  # each sample as it was, or mirrored
    assert 70 < int(mirrored.sum()) < 130  # with probability 1/2 each
    assert torch.equal(random_shift(x, 0, torch.Generator().manual_seed(0)), x)  # no shift, no flip: unchanged


def test_random_affine_rotates_and_scales_about_the_centre():
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0  # a centred square
    noise = torch.Generator().manual_seed(0)
    assert torch.allclose(random_affine(x, 0.0, 0.0, noise), x, atol=1e-5)  # no rotation, no scaling: unchanged
    out = random_affine(x, 45.0, 0.3, noise)
    mass = out.sum(dim=(1, 2, 3))
    assert out.shape == x.shape and not torch.allclose(out[0], out[1])  # each sample its own transform
    assert (mass > 16 * 0.7 ** 2 * 0.8).all() and (mass < 16 * 1.3 ** 2 * 1.2).all()  # area follows scale^2
    centre = (out * torch.arange(16.0).view(1, 1, 16, 1)).sum(dim=(1, 2, 3)) / mass
    assert torch.allclose(centre, torch.full_like(centre, 7.5), atol=0.3)  # about the centre


def test_random_zoom_only_enlarges_about_the_centre_and_excludes_the_two_sided_scale():
    import pytest

    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0  # a small centred square
    out = random_affine(x, 0.0, 0.5, torch.Generator().manual_seed(0), scale_centre=1.5)  # --augment-zoom 1
    mass = out.sum(dim=(1, 2, 3))
    assert (mass > 16 * 0.95).all() and (mass < 16 * 2.0 ** 2 * 1.05).all()  # factors in [1, 2]: area x1 to x4
    assert mass.max() > 16 * 3.0 and mass.min() < 16 * 1.5  # the factor is drawn per sample over the range
    centre = (out * torch.arange(16.0).view(1, 1, 16, 1)).sum(dim=(1, 2, 3)) / mass
    assert torch.allclose(centre, torch.full_like(centre, 7.5), atol=0.3)  # about the centre
    with pytest.raises(ValueError, match="augment_zoom and augment_scale"):
        DistillConfig(method="rdskd", augment_zoom=0.5, augment_scale=0.2)


def test_random_window_keeps_one_square_per_sample_and_blackens_the_rest():
    x = torch.arange(1.0, 1 + 2 * 20 * 20).view(1, 2, 20, 20).repeat(64, 1, 1, 1)  # no pixel equals the background
    black = torch.tensor([-5.0, -7.0]).view(1, 2, 1, 1)
    out = random_window(x, 0.3, black, torch.Generator().manual_seed(0))
    sides = set()
    for i in range(64):
        kept = out[i, 0] != -5.0
        rows, cols = kept.any(1).nonzero().flatten(), kept.any(0).nonzero().flatten()
        assert kept.sum() == len(rows) * len(cols) and len(rows) == len(cols)  # one square window
        assert 6 <= len(rows) <= 20  # its side is a fraction in [0.3, 1] of the image's
        assert torch.equal(out[i][:, kept], x[i][:, kept])  # kept pixels are untouched, in every channel
        assert (out[i, 1][~kept] == -7.0).all()  # the rest is the background, per channel
        sides.add(len(rows))
    assert len(sides) > 5  # each sample its own window
    assert torch.equal(random_window(x, 1.0, black, None), x)  # a full-size window changes nothing


def test_sample_store_is_a_ring_buffer_of_samples_and_teacher_outputs():
    store = SampleStore(capacity=10, keep_features=False)
    for start in (0, 6, 12):
        x = torch.arange(start, start + 6, dtype=torch.float32).view(6, 1, 1, 1)
        store.add(x, Features(x.view(6, 1) * 2, x.view(6, 1), None))
    x, out = store.contents()
    assert len(store) == 10 and sorted(x.flatten().tolist()) == list(range(8, 18))  # the oldest 8 were dropped
    assert torch.equal(out.logits, x.view(10, 1) * 2) and out.penultimate is None
    xs, outs = store.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(outs.logits, xs.view(5, 1) * 2)


def test_the_bank_keeps_every_generated_batch_and_feeds_stage_two(digits_teacher):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="rdskd", generator_steps=3, student_steps=2, batch_size=8, memory_bank=100,
                        student_batch_size=16, augment_shift=2, augment_flip=True, augment_mixup=1.0,
                        augment_window=0.5, log_every=100, eval_teacher=False)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    for _ in range(3):
        engine.step()
    assert len(engine.samples.bank) == 24  # three generator batches, kept for free
    x, logits = next_student_batch(engine)
    assert x.shape[0] == 16  # student batches come from the bank at their own size
    with torch.no_grad():
        assert torch.allclose(logits, teacher(x), atol=1e-5)  # windowed, shifted, mirrored, mixed: relabelled
    assert engine.samples.pool[0].shape[0] == 24  # the pool is the bank here (no extra pool batches asked for)


def test_live_health_watches_the_samples_before_augmentation(digits_teacher):
    """Live collapse warnings are about what the generator makes: a student step's windows and mixes are
    relabelled for training, but live health sees the pool samples' own teacher outputs."""
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="rdskd", generator_steps=2, student_steps=2, batch_size=8, memory_bank=16,
                        student_batch_size=8, augment_window=0.3, augment_mixup=1.0, log_every=100,
                        eval_teacher=False)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    for _ in range(2):
        engine.step()
    observed, trained = [], []
    engine.live.observe = lambda out: observed.append(out.logits)
    original = engine.method.student_loss
    engine.method.student_loss = lambda x, out, student: (trained.append(out.logits), original(x, out, student))[1]
    engine.step()
    pool_logits = engine.samples.pool[1].logits
    assert all(any(torch.equal(row, p) for p in pool_logits) for row in observed[0])  # as drawn from the pool
    assert not torch.allclose(observed[0], trained[0])  # the student trained on the relabelled, augmented batch


def test_several_generators_each_start_fresh_and_each_fill_a_slice_of_the_pool(digits_teacher):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="rdskd", generator_steps=4, student_steps=2, batch_size=8, generators=2,
                        sample_pool=3, log_every=100, eval_teacher=False)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    first_init = {k: v.clone() for k, v in engine.generator.state_dict().items()}
    for _ in range(2):
        engine.step()
    trained = {k: v.clone() for k, v in engine.generator.state_dict().items()}
    engine.step()  # the second generator starts here, then takes its first step
    assert len(engine.samples.snapshots) == 1 and engine.samples.snapshots[0][0].shape[0] == 2 * 8
    assert engine.generator_local_step() == 1 and engine.method.penalty.reference is not None
    weight = "net.0.weight" if "net.0.weight" in trained else next(k for k in trained if k.endswith("weight"))
    assert not torch.equal(engine.generator.state_dict()[weight], trained[weight])
    assert not torch.equal(engine.generator.state_dict()[weight], first_init[weight])  # its own initialisation
    engine.step()
    engine.step()  # stage 2: the last generator's slice joins the first
    assert engine.samples.pool[0].shape[0] == 3 * 8


def test_pool_snapshots_draw_slices_from_one_generator_during_stage_1_without_changing_its_training(digits_teacher):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    base = dict(method="rdskd", generator_steps=4, student_steps=2, batch_size=8, sample_pool=3, log_every=100,
                eval_teacher=False)
    snap = Distiller(DistillConfig(**base, pool_snapshots=2), teacher, spec, torch.device("cpu"))
    plain = Distiller(DistillConfig(**base), teacher, spec, torch.device("cpu"))
    for _ in range(2):
        snap.step(), plain.step()
    assert snap.samples.snapshots == []
    snap.step(), plain.step()  # step 2 of 4: the first slice (2 of 3 batches) comes from the half-trained generator
    assert len(snap.samples.snapshots) == 1 and snap.samples.snapshots[0][0].shape[0] == 2 * 8
    half_trained = snap.samples.snapshots[0][0].clone()
    snap.step(), plain.step()
    for key, value in plain.generator.state_dict().items():  # drawing the slice left stage 1 as it was
        assert torch.equal(snap.generator.state_dict()[key], value), key
    snap.step(), plain.step()  # stage 2: the final generator's slice joins the first
    assert snap.samples.pool[0].shape[0] == plain.samples.pool[0].shape[0] == 3 * 8
    assert torch.equal(snap.samples.pool[0][:16], half_trained)
    assert not torch.equal(snap.samples.pool[0][:16], plain.samples.pool[0][:16])
    with pytest.raises(ValueError, match="choose one"):
        DistillConfig(**{**base, "sample_pool": 4}, pool_snapshots=2, generators=2)


POOL_BASE = dict(method="rdskd", generator_steps=3, student_steps=1, batch_size=8, sample_pool=2, log_every=100,
                 eval_teacher=False)


def pool_engines(digits_teacher, option: str, values) -> tuple[dict, torch.nn.Module]:
    """One tiny two-stage engine per value of a pool option (stage 1 identical in all), and the teacher."""
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    return {v: Distiller(DistillConfig(**POOL_BASE, **{option: v}), teacher, spec, torch.device("cpu"))
            for v in values}, teacher


def test_a_train_mode_pool_normalises_each_batch_by_its_own_statistics_and_leaves_the_running_ones(digits_teacher):
    engines, _ = pool_engines(digits_teacher, "pool_generator_mode", ("eval", "train"))
    for engine in engines.values():
        for _ in range(3):
            engine.step()  # stage 1, identical in both
    before = {k: v.clone() for k, v in engines["train"].generator.state_dict().items()}
    for engine in engines.values():
        engine.step()  # the first student step draws the pool
    pools = {mode: engine.samples.pool[0][:16] for mode, engine in engines.items()}
    assert pools["eval"].shape == pools["train"].shape == (16, *pools["eval"].shape[1:])
    assert not torch.allclose(pools["eval"], pools["train"])  # the two modes normalise differently
    # the generator ends in a BN without affine: in train mode each pool batch of 8 has mean 0 exactly
    assert all(abs(float(batch.mean())) < 1e-4 for batch in pools["train"].float().split(8))
    assert any(abs(float(batch.mean())) > 1e-3 for batch in pools["eval"].float().split(8))
    generator = engines["train"].generator
    for key, value in generator.state_dict().items():  # running statistics as stage 1 left them
        assert torch.equal(value, before[key]), key
    assert not generator.training


def test_several_generators_need_the_two_stage_schedule(digits_teacher):
    import pytest

    from rdskd_dist.errors import UserError

    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="dafl", generator_steps=4, sample_pool=2, generators=2, batch_size=8)
    with pytest.raises(UserError, match="two_stage"):
        Distiller(cfg, teacher, spec, torch.device("cpu"))


def test_adversarial_steps_raise_the_student_teacher_gap_within_eps(digits_teacher):
    from rdskd_dist.engine.samples import toward_disagreement
    from rdskd_dist.models import create_model

    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    torch.manual_seed(0)
    student = create_model("lenet5_half", num_classes=10, in_channels=1, image_size=32).train()
    x = torch.randn(64, 1, 32, 32, generator=torch.Generator().manual_seed(1))

    def gap(v):
        with torch.no_grad():
            return torch.nn.functional.kl_div(torch.log_softmax(student(v), 1), torch.softmax(teacher(v), 1),
                                              reduction="batchmean").item()

    moved = toward_disagreement(x, teacher, student, steps=3, eps=0.3, precision="fp32")
    assert moved.shape == x.shape and (moved - x).abs().max() <= 0.3 + 1e-5  # within the eps ball
    assert gap(moved) > 1.5 * gap(x)  # the student is further from the teacher where it was moved
    assert student.training  # its mode is restored


def test_adversarial_half_batch_is_relabelled_and_balanced_pool_evens_classes(digits_teacher):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="rdskd", generator_steps=3, student_steps=2, batch_size=32, memory_bank=96,
                        student_batch_size=4000, augment_adversarial_steps=2, pool_balance=True, log_every=100,
                        eval_teacher=False)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    for _ in range(3):
        engine.step()
    x, logits = next_student_batch(engine)
    with torch.no_grad():
        assert torch.allclose(logits, teacher(x), atol=1e-4)  # moved samples are relabelled by the teacher
    pool_labels = engine.samples.pool[1].logits.argmax(1)
    pool_counts = torch.bincount(pool_labels, minlength=10).float()
    present = pool_counts > 0
    drawn = torch.bincount(logits[:2000].argmax(1), minlength=10).float()  # the unmoved half keeps its labels
    # balanced: every class the pool has is drawn about equally often, however rare it is in the pool
    assert drawn[present].min() / drawn[present].max() > 0.6, (pool_counts, drawn)
    assert pool_counts[present].min() / pool_counts[present].max() < 0.6 or present.sum() < 10


def test_teacher_training_crops_are_windows_of_the_padded_image_and_flips_mirror_them():
    """The teacher's batched crop (one gather) gives, per sample, a 32x32 window of the zero-padded image,
    mirrored for the flipped ones, and the same crops for the same seed."""
    import torch.nn.functional as F

    from rdskd_dist.teacher_training import _augment

    x = torch.randn(64, 3, 32, 32)
    out = _augment(x, flip=True, pad=4, gen=torch.Generator().manual_seed(0))
    again = _augment(x, flip=True, pad=4, gen=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, again)
    padded = F.pad(x, (4, 4, 4, 4))
    flipped = 0
    for i in range(64):
        windows = {(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32].flip(-1) if f
                                  else padded[i, :, dy:dy + 32, dx:dx + 32])}
        assert windows, f"sample {i} is no (mirrored) window of its padded image"
        flipped += all(f for *_, f in windows)
    assert 10 < flipped < 54  # about half are mirrored
    assert not torch.equal(out, x)  # some crops moved


def test_generator_steps_judge_a_shifted_and_scaled_view_and_train_through_it(digits_teacher):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="rdskd", generator_steps=2, student_steps=1, batch_size=8, memory_bank=16,
                        generator_augment_shift=3, generator_augment_scale=0.3, log_every=100, eval_teacher=False)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    made, judged = [], []
    forward = engine.generator.forward
    engine.generator.forward = lambda z: (made.append(forward(z)), made[-1])[1]
    teacher_forward = engine.method.teacher_forward
    engine.method.teacher_forward = lambda x, **kw: (judged.append(x), teacher_forward(x, **kw))[1]
    before = [p.detach().clone() for p in engine.generator.parameters()]
    engine.step()
    assert made[0].shape == judged[0].shape and not torch.allclose(made[0], judged[0])  # the teacher saw a view
    assert judged[0].requires_grad  # ... through which the generator trains
    assert any(not torch.equal(a, b) for a, b in zip(before, engine.generator.parameters()))
    bank_x, _ = engine.samples.bank.contents()
    assert torch.equal(bank_x, judged[0].detach())  # the bank keeps the view, with the outputs the teacher gave it


def test_cutmix_pastes_one_box_of_another_sample_and_reports_what_stays():
    from rdskd_dist.methods.mixing import cut_pairs

    n = 64
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).repeat(1, 2, 12, 12)  # sample i is all i
    out, kept, perm = cut_pairs(x, 1.0, torch.Generator().manual_seed(0))
    boxes = set()
    for i in range(n):
        pasted = out[i, 0] != i
        if perm[i] == i or not pasted.any():
            continue
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        assert pasted.sum() == len(rows) * len(cols)  # one axis-aligned box
        assert (out[i][:, pasted] == perm[i]).all()  # from the paired sample, in every channel
        assert kept[i] == pytest.approx(1 - pasted.sum().item() / 144)  # the share still its own
        boxes.add((len(rows), len(cols)))
    assert len(boxes) > 5  # each sample its own box
    assert ((kept >= 0) & (kept <= 1)).all() and 0.2 < kept.mean() < 0.9


def test_cutmix_and_mixup_each_reach_the_student_relabelled(digits_teacher):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    for extra in ({"augment_cutmix": 1.0}, {"augment_cutmix": 1.0, "augment_mixup": 1.0}):
        cfg = DistillConfig(method="rdskd", generator_steps=2, student_steps=2, batch_size=8, memory_bank=16,
                            student_batch_size=64, log_every=100, eval_teacher=False, **extra)
        engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
        for _ in range(2):
            engine.step()
        x, logits = next_student_batch(engine)
        pool = engine.samples.pool[0]
        with torch.no_grad():
            assert torch.allclose(logits, teacher(x), atol=1e-5)  # relabelled by the teacher
        # CutMix leaves every pixel equal to the same pixel of one of the pool's samples; mixup blends
        from_pool = [(x[i:i + 1] - pool).abs().amin(0).amax() < 1e-6 for i in range(x.shape[0])]
        if "augment_mixup" in extra:
            assert 0 < sum(from_pool) < x.shape[0]  # some samples cut, others blended
        else:
            assert all(from_pool)


def test_pool_latent_std_draws_the_pool_from_scaled_noise_relabelled_by_the_teacher(digits_teacher):
    from pydantic import ValidationError

    engines, teacher = pool_engines(digits_teacher, "pool_latent_std", (1.0, 2.0))
    for engine in engines.values():
        for _ in range(4):
            engine.step()  # stage 1 (identical in both), then the first student step draws the pool
    wide = engines[2.0]
    noise = torch.Generator().manual_seed(wide.samples.pool_seed)  # the one slice's seed (slice 0)
    z = torch.randn(8, wide.cfg.latent_dim, generator=noise)
    with torch.no_grad():
        expected = wide.generator.eval()(2.0 * z)
        relabelled = teacher(wide.samples.pool[0][:8])
    assert torch.allclose(wide.samples.pool[0][:8], expected, atol=1e-5)
    assert torch.allclose(wide.samples.pool[1].logits[:8], relabelled, atol=1e-4)
    assert not torch.allclose(engines[1.0].samples.pool[0][:8], expected, atol=1e-3)
    with pytest.raises(ValidationError):
        DistillConfig(**POOL_BASE, pool_latent_std=0.0)
