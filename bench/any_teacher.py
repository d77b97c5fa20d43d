"""Any teacher (issue 14): three teachers that are not in the model zoo, trained here on real data, saved as bare
state_dicts and distilled through `teacher_arch="own_teachers:FACTORY"` exactly as a user would (the CLI's
`--teacher-arch own_teachers:gn_gap_cnn` with `bench/` on PYTHONPATH). Per teacher: its test accuracy, a student
trained by KD on the real training images at the same student budget, and data-free students per method at one
shared budget, each with the health numbers the run reports without test data (effective classes, top class,
teacher confidence, student-teacher agreement, collapse warning), side by side with the test accuracy, and how
smooth the final generator's samples are (total variation; on the real-data row, the real test images').

    OMP_NUM_THREADS=1 python bench/any_teacher.py --seeds 0
    OMP_NUM_THREADS=1 python bench/any_teacher.py --seeds 0 --teachers shufflenet_1ch --variants rdskd_bn \
        --no-reference --resume                          # add a variant (a lever against collapse) to the same files
    OMP_NUM_THREADS=1 python bench/any_teacher.py --seeds 0 --teachers gn_gap_cnn --variants rdskd_tv1 rdskd_tv4 \
        --no-reference --resume                          # the total-variation prior's weight check

`--teachers lenet5_zoo` adds a control from the zoo (LeNet-5, trained and distilled the same way). The results'
header names the last command; docs/results/README.md lists all of them.

Teachers go to runs/any_teacher/<teacher>.pt (reused when present, with their accuracy from a sidecar JSON);
students, generators and result.json to runs/any_teacher/<teacher>_<variant>_s<seed>/. Results:
docs/results/<--name>.{json,md}, rewritten after every run; `--resume` skips runs already there. `--tiny`: the
digits demo, the GroupNorm teacher only, tiny budgets (the test suite's smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402
from mnist_fast import CONFIGS  # noqa: E402

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import get_spec, load_split  # noqa: E402
from rdskd_dist.engine import evaluate_accuracy, run_distillation  # noqa: E402
from rdskd_dist.files import atomic_torch_save, atomic_write_json  # noqa: E402
from rdskd_dist.methods.losses import kd_kl_loss, total_variation_loss  # noqa: E402
from rdskd_dist.models import create_model, create_model_from_spec  # noqa: E402
from rdskd_dist.teachers import build_external, load_teacher  # noqa: E402

# Each teacher: dataset, factory (module:callable, as --teacher-arch takes it), training recipe, student.
TEACHERS = {
    "gn_gap_cnn": dict(dataset="mnist", data_root="../shared/datasets/mnist", arch="own_teachers:gn_gap_cnn",
                       epochs=4, batch_size=128, lr=3e-3, flip=False, crop=2, student="lenet5_half"),
    "shufflenet_1ch": dict(dataset="mnist", data_root="../shared/datasets/mnist", arch="own_teachers:shufflenet_1ch",
                           epochs=3, batch_size=128, lr=5e-3, flip=False, crop=2, student="lenet5_half"),
    "small_cifar_cnn": dict(dataset="cifar10", data_root="../shared/datasets/cifar10",
                            arch="own_teachers:small_cifar_cnn", epochs=5, batch_size=128, lr=5e-3, flip=True, crop=4,
                            student="lenet5"),
    # the same architectures trained longer, to the >= 99% that issue 14's MNIST target assumes
    "gn_gap_cnn_99": dict(dataset="mnist", data_root="../shared/datasets/mnist", arch="own_teachers:gn_gap_cnn",
                          epochs=12, batch_size=128, lr=3e-3, flip=False, crop=2, student="lenet5_half"),
    "shufflenet_1ch_99": dict(dataset="mnist", data_root="../shared/datasets/mnist",
                              arch="own_teachers:shufflenet_1ch", epochs=10, batch_size=128, lr=5e-3, flip=False,
                              crop=2, student="lenet5_half"),
    # a control inside the zoo (LeNet-5, no BN), trained and distilled the same way: what healthy numbers look like
    "lenet5_zoo": dict(dataset="mnist", data_root="../shared/datasets/mnist", arch="lenet5", epochs=3, batch_size=128,
                       lr=3e-3, flip=False, crop=2, student="lenet5_half"),
}
# One shared budget: the same student steps and student batch for every method and for the real-data reference,
# the same generator steps for RDSKD (two-stage) and DFAD (adversarial: 5 student steps per generator step), with
# the engine's short-budget options on (memory bank + pool, shifted and mixed student batches relabelled by the
# teacher, one-cycle student lr) and a half-width generator (the reference generator's 128/64 channels cost about
# 110 M multiply-adds per 32x32 sample, more than any of these teachers; at width 0.5 a quarter of that).
STUDENT_STEPS, STUDENT_BATCH, GEN_BATCH = 1000, 256, 128
TV_CHECK, W_TV = (1.0, 4.0), 1.0  # the weights tried on gn_gap_cnn, and the one kept
RANGE_CHECK = (1.0, 10.0)
BN_CHECK = (3.0, 10.0, 30.0)
SHARED = dict(batch_size=GEN_BATCH, student_steps=STUDENT_STEPS, student_batch_size=STUDENT_BATCH,
              memory_bank=25600, augment_shift=3, augment_mixup=1.0, precision="fp32", generator_width=0.5)
# RDSKD at the shared budget: 200 generator steps, then a pool of 40 batches from the final generator
_RDSKD = dict(method="rdskd", generator_steps=200, sample_pool=40, student_lr_schedule="onecycle")
# bench/mnist_fast.py's rdskd_long_range (the zoo LeNet-5's best 10-minute setting: 98.21 +- 0.02 on AMD) for a
# teacher outside the zoo, at the reference generator's full width: 800 generator and 16,000 student steps, bf16
_LONG = {**CONFIGS["rdskd_long_range"], "generator_width": 1.0}
# DFAD as its authors train it: the student on the exact batch the generator made adversarial
_DFAD_OFF = dict(memory_bank=0, augment_shift=0, augment_mixup=0.0)
VARIANTS = {
    "rdskd": dict(_RDSKD),
    "dfad": dict(method="dfad", student_steps_per_generator_step=5, student_lr_schedule="onecycle"),
    # levers against collapse, each a paired on/off against the plain variant above (same seed, same budget)
    "rdskd_bn": dict(**_RDSKD, w_bn=1.0),
    "rdskd_gen4": dict(**_RDSKD, generators=4),
    "dfad_bn": dict(method="dfad", student_steps_per_generator_step=5, student_lr_schedule="onecycle", w_bn=1.0),
    # the total-variation image prior (any teacher, BN or not); rdskd_tv carries the weight picked by the
    # rdskd_tv<W> check on gn_gap_cnn (docs/results/README.md)
    **{f"rdskd_tv{w:g}": dict(**_RDSKD, w_tv=w) for w in TV_CHECK},
    "rdskd_tv": dict(**_RDSKD, w_tv=W_TV),
    # the pixel-range prior (session 8): generated pixels kept inside what the teacher's normalisation allows
    **{f"rdskd_range{w:g}": dict(**_RDSKD, w_range=w) for w in RANGE_CHECK},
    "rdskd_bn_range10": dict(**_RDSKD, w_bn=1.0, w_range=10.0),
    # the BN-statistics weight (session 20): DeepInversion-style methods weigh it well above the class terms
    # (Fast-Datafree's CIFAR setting: 10 against 0.4 for the one-hot term), RDSKD's runs here used 1
    **{f"rdskd_bn{w:g}": dict(**_RDSKD, w_bn=w) for w in BN_CHECK},
    # stage 2 keeps training the generator, one step every 5 student steps (200 more), rewarded for samples the
    # student gets wrong (CMI's and Fast-Datafree's adversarial term, which both weigh near 1 on CIFAR); the
    # control spends the same 200 generator steps in stage 1 instead (session 20)
    "rdskd_bn_adv5": dict(**_RDSKD, w_bn=1.0, adversarial_every=5, w_adv=1.0),
    "rdskd_bn_g400": dict(_RDSKD, w_bn=1.0, generator_steps=400),
    # keep a random window of each student sample and blacken the rest (session 13): fragments on a plain background
    **{f"rdskd_range10_win{round(10 * w)}": dict(**_RDSKD, w_range=10.0, augment_window=w) for w in (0.3, 0.5)},
    # on top of the window: half of each student batch moved toward student-teacher disagreement; rotation and scale
    "rdskd_range10_win3_adv": dict(**_RDSKD, w_range=10.0, augment_window=0.3, augment_adversarial_steps=1),
    "rdskd_range10_win3_affine": dict(**_RDSKD, w_range=10.0, augment_window=0.3, augment_rotate=15.0,
                                      augment_scale=0.3),
    "rdskd_bn_win3": dict(**_RDSKD, w_bn=1.0, augment_window=0.3),
    **{f"rdskd_bn_range10_win{round(10 * w)}": dict(**_RDSKD, w_bn=1.0, w_range=10.0, augment_window=w)
       for w in (0.3, 0.5)},
    # the generator's losses judge a shifted and scaled view of each sample (session 14), with and without the window
    "rdskd_range10_gview": dict(**_RDSKD, w_range=10.0, generator_augment_shift=4, generator_augment_scale=0.2),
    "rdskd_range10_win3_gview": dict(**_RDSKD, w_range=10.0, augment_window=0.3, generator_augment_shift=4,
                                     generator_augment_scale=0.2),
    "rdskd_bn_gview": dict(**_RDSKD, w_bn=1.0, generator_augment_shift=4, generator_augment_scale=0.2),
    # the student's KD temperature (RDSKD's reference: 10, where KD is close to matching every logit) and mixup
    # off, on top of the window (session 17)
    **{f"rdskd_range10_win3_t{t}": dict(**_RDSKD, w_range=10.0, augment_window=0.3, temperature=float(t))
       for t in (1, 4)},
    "rdskd_range10_win3_nomix": dict(**_RDSKD, w_range=10.0, augment_window=0.3, augment_mixup=0.0),
    # student samples zoomed in by up to x1.5 / x2 (session 18): the GAP teacher's generated 0s are small blobs, real
    # 0s large rings (any_teacher_confusion.md); on top of the best short setting
    **{f"rdskd_range10_win3_nomix_zoom{round(10 * z)}": dict(**_RDSKD, w_range=10.0, augment_window=0.3,
                                                             augment_mixup=0.0, augment_zoom=z) for z in (0.5, 1.0)},
    # DAFL's activation term added to RDSKD (session 24): a globally pooled teacher's penultimate feature is the mean
    # over positions, so a sample activates it more when its object covers more of the canvas (its 0s were small
    # blobs, real 0s large rings: session 17's confusions); on top of the best short setting
    **{f"rdskd_range10_win3_nomix_a{w}": dict(**_RDSKD, w_range=10.0, augment_window=0.3, augment_mixup=0.0, w_a=weight)
       for w, weight in (("01", 0.1), ("1", 1.0))},
    **{f"rdskd_long{suffix}": dict(_LONG, **extra)
       for suffix, extra in (("", {}), ("_win3", dict(augment_window=0.3)), ("_bn", dict(w_bn=1.0)),
                             ("_bn10", dict(w_bn=10.0)),
                             ("_bn_win3", dict(w_bn=1.0, augment_window=0.3)),
                             # natural images: each student sample mirrored with probability 1/2 (session 15)
                             ("_bn_flip", dict(w_bn=1.0, augment_flip=True)),
                             # mixup off (session 17: +2.80 on 3 paired seeds at the short budget, GAP teacher)
                             ("_win3_nomix", dict(augment_window=0.3, augment_mixup=0.0)),
                             # two generators of 400 steps from fresh initialisations instead of one of 800: the BN-free
                             # teacher's seeds spread 89-95 (session 26), and two generators narrowed the zoo teacher's
                             # seed spread 0.28 -> 0.11 (session 11); session 28
                             ("_win3_nomix_gen2", dict(augment_window=0.3, augment_mixup=0.0, generators=2)),
                             ("_win3_nomix_a01", dict(augment_window=0.3, augment_mixup=0.0, w_a=0.1)),
                             ("_win3_nomix_zoom5", dict(augment_window=0.3, augment_mixup=0.0, augment_zoom=0.5)),
                             ("_bn_win3_zoom5", dict(w_bn=1.0, augment_window=0.3, augment_zoom=0.5)),
                             # stage 2 keeps training the generator, one step every 20 student steps, rewarded for
                             # samples the student gets wrong (adv) or not (refresh, the control); session 17
                             ("_win3_adv20", dict(augment_window=0.3, adversarial_every=20, w_adv=1.0)),
                             ("_win3_refresh20", dict(augment_window=0.3, adversarial_every=20)))},
    # twice the generator steps (the bank keeps all of them): does the teacher without BN keep gaining from stage 1?
    "rdskd_long_g1600_win3": dict(_LONG, generator_steps=1600, memory_bank=204800, augment_window=0.3),
    # the CIFAR-10 teacher (session 24): stage 1 kept gaining at the short budget (G400 over G200, session 20), so
    # twice the generator steps at the long one; and CutMix (session 23), the standard mix for natural images
    "rdskd_long_bn_g1600": dict(_LONG, w_bn=1.0, generator_steps=1600, memory_bank=204800),
    "rdskd_long_bn_cutmix": dict(_LONG, w_bn=1.0, augment_mixup=0.0, augment_cutmix=1.0),
    # DFAD as its authors train it: the student on the exact batch the generator made adversarial (no bank replay,
    # no shift or mixup; with them the game breaks, docs/results/README.md, issue 15), alone and with the priors
    **{f"dfad_off{suffix}": dict(method="dfad", student_steps_per_generator_step=5, student_lr_schedule="onecycle",
                                 **_DFAD_OFF, **prior)
       for suffix, prior in (("", {}), ("_range10", dict(w_range=10.0)), ("_bn", dict(w_bn=1.0)))},
}
# The baselines as tune/mnist-robustness-long.yaml trains them at their reference weights (mnist_fast.py's
# dafl_long_range_baloh, dfad[_ar_vi]_long_off_range), at the full-width generator, with the teacher's priors as
# RDSKD's rows have them: the BN-statistics term on a BN teacher (_bn), and DAFL, whose student learns from the bank
# as RDSKD's does, with the same student window (DFAD's game stays on the exact adversarial batch: no bank, no
# augmentation; session 27)
_BN_PRIOR = {"": {}, "_bn": dict(w_bn=1.0)}
# (and without the window, as the CIFAR-10 teacher's RDSKD row rdskd_long_bn has none; session 28)
_WINDOW = {"": {}, "_win3": dict(augment_window=0.3)}
VARIANTS.update({f"dafl_long{bn}{win}": {**CONFIGS["dafl_long_range_baloh"], "generator_width": 1.0, **prior, **window}
                 for bn, prior in _BN_PRIOR.items() for win, window in _WINDOW.items()})
VARIANTS.update({f"{m}_long_off{bn}": {**CONFIGS[f"{m}_long_off_range"], "generator_width": 1.0, **_DFAD_OFF, **prior}
                 for m in ("dfad", "dfad_ar_vi") for bn, prior in _BN_PRIOR.items()})
# DFAD+AR+VI with one of its two student terms (mnist_fast.py's dfad_ar / dfad_vi): which one killed the CIFAR-10
# teacher's student (session 30)?
VARIANTS.update({f"{m}_long_off_bn": {**CONFIGS[f"{m}_long_off_range"], "generator_width": 1.0, **_DFAD_OFF,
                                      **_BN_PRIOR["_bn"]} for m in ("dfad_ar", "dfad_vi")})
# A student that pools globally, as these teachers do (session 25): LeNet-5's dense layers learn where the evidence
# sits in each sample, a GAP student the local evidence itself, which is what a GAP teacher scores
# ... and the full-width LeNet-5 (session 26; 4x LeNet-5-half's parameters): students of teachers outside the zoo
# agree with their teacher on only 67-81% of fresh generated samples, so is the half-width student too small?
STUDENTS = {"_gapnet": "gapnet_half", "_lenet5": "lenet5"}
VARIANTS.update({f"{base}{suffix}": {**VARIANTS[base], "student": student}
                 for base in ("rdskd_range10_win3_nomix", "rdskd_range10", "rdskd_bn_range10_win3", "rdskd_bn_range10",
                              "rdskd_long_win3_nomix", "rdskd_long_win3_nomix_gen2", "rdskd_long", "rdskd_long_bn_win3",
                              "rdskd_long_bn",
                              "dafl_long_win3", "dafl_long_bn_win3", "dfad_long_off", "dfad_long_off_bn",
                              "dfad_ar_vi_long_off", "dfad_ar_vi_long_off_bn")
                 for suffix, student in STUDENTS.items()})
# The student also matches the teacher's late feature through a connector (FitNets' hint, session 30): the students
# of the teacher without BN agree with it on only 76-81% of fresh generated samples, and a feature vector per sample
# is more for the student to learn from than ten logits
VARIANTS.update({f"{base}_hint1": {**VARIANTS[base], "w_hint": 1.0}
                 for base in ("rdskd_long_win3_nomix_lenet5", "rdskd_long_bn_win3_lenet5", "rdskd_long_bn")})
# The real-data KD references: the same student on the real training images, at the shared student steps or at the
# rdskd_long* variants', with the teacher's student or the student of the *_gapnet / *_lenet5 variants
REFERENCES = {f"kd_real_data{budget}{suffix}": {**steps, **arch}
              for budget, steps in (("", {}), ("_long", dict(student_steps=_LONG["student_steps"])))
              for suffix, arch in (("", {}), *((k, dict(student=v)) for k, v in STUDENTS.items()))}
TINY_TEACHER = dict(dataset="digits", data_root=None, epochs=2, batch_size=64, lr=3e-3, flip=False, crop=0,
                    student="lenet5_half")
TINY_SHARED = dict(batch_size=16, student_steps=10, student_batch_size=16, memory_bank=256, augment_shift=2,
                   augment_mixup=1.0, precision="fp32")
TINY_VARIANTS = {"rdskd": dict(method="rdskd", generator_steps=4, sample_pool=2),
                 "dfad": dict(method="dfad", student_steps_per_generator_step=5)}


def augment(images: torch.Tensor, crop: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """uint8 pixels: one random crop per batch from a copy padded with black (0) pixels, and per-sample horizontal
    flips (torchvision's RandomCrop(padding) and RandomHorizontalFlip, before normalisation)."""
    if crop:
        _, _, h, w = images.shape
        padded = torch.nn.functional.pad(images, (crop, crop, crop, crop))
        dx, dy = torch.randint(0, 2 * crop + 1, (2,), generator=gen).tolist()
        images = padded[:, :, dy:dy + h, dx:dx + w]
    if flip:
        mask = torch.rand(images.shape[0], generator=gen) < 0.5
        images = torch.where(mask.view(-1, 1, 1, 1), images.flip(3), images)
    return images


def normalize(images: torch.Tensor, spec) -> torch.Tensor:
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (images.float() / 255 - mean) / std


def train_net(model: torch.nn.Module, train, *, epochs: int, batch_size: int, lr: float, seed: int, crop: int = 0,
              flip: bool = False, teacher: torch.nn.Module | None = None, steps: int | None = None) -> torch.nn.Module:
    """Adam with a one-cycle lr on the real training split: cross-entropy on the labels, or KD (T=4) on a teacher's
    logits when `teacher` is given. `steps` overrides epochs (the real-data KD reference's student budget)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = (len(train) + batch_size - 1) // batch_size
    total = steps if steps is not None else epochs * per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(train), batch_size):
            if step == total:
                break
            idx = order[start:start + batch_size]
            x = normalize(augment(train.images[idx], crop, flip, gen), train.spec)
            out = model(x)
            if teacher is None:
                loss = torch.nn.functional.cross_entropy(out, train.labels[idx])
            else:
                with torch.no_grad():
                    t = teacher(x)
                loss = kd_kl_loss(out, t, 4.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    return model.eval()


def get_teacher(name: str, recipe: dict, args) -> tuple[Path, float, float]:
    """The bare state_dict file of a teacher (trained here when absent), its test accuracy and training seconds."""
    path = args.teacher_dir / f"{name}.pt"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return path, meta["test_accuracy"], meta["train_time_s"]
    spec = get_spec(recipe["dataset"])
    train = load_split(recipe["dataset"], "train", recipe["data_root"])
    test = load_split(recipe["dataset"], "test", recipe["data_root"])
    start = time.perf_counter()
    dims = {"num_classes": spec.num_classes, "in_channels": spec.channels}
    model = build_external(recipe["arch"], dims) if ":" in recipe["arch"] else create_model(recipe["arch"], **dims)
    train_net(model, train, epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"], seed=0,
              crop=recipe["crop"], flip=recipe["flip"])
    seconds = time.perf_counter() - start
    acc = evaluate_accuracy(model, test, torch.device("cpu"))
    atomic_torch_save(model.state_dict(), path)  # what a user has: a bare state_dict
    atomic_write_json({"test_accuracy": acc, "train_time_s": seconds, "recipe": recipe}, meta_path)
    print(f"teacher: {name} test_acc={acc:.2f}% train={seconds:.0f}s -> {path}", flush=True)
    return path, acc, seconds


def kd_real_run(recipe: dict, teacher_path: Path, seed: int, steps: int, batch: int, student: str) -> dict:
    """The reference: the same student trained by KD on the real training images, same steps and batch."""
    spec = get_spec(recipe["dataset"])
    train = load_split(recipe["dataset"], "train", recipe["data_root"])
    test = load_split(recipe["dataset"], "test", recipe["data_root"])
    teacher, _ = load_teacher(teacher_path, spec, arch=recipe["arch"])
    start = time.perf_counter()
    model = create_model(student, num_classes=spec.num_classes, in_channels=spec.channels)
    train_net(model, train, epochs=0, batch_size=batch, lr=2e-3, seed=seed, teacher=teacher, steps=steps)
    seconds = time.perf_counter() - start
    return {"student_accuracy": evaluate_accuracy(model, test, torch.device("cpu")), "student_steps": steps,
            "student": student,
            "train_time_s": seconds, "wall_time_s": seconds, "sample_tv": real_tv(recipe)}


def distill_run(name: str, recipe: dict, teacher_path: Path, variant: str, options: dict, shared: dict, seed: int,
                args) -> dict:
    """One data-free student through the public API, the teacher loaded from its bare state_dict by factory name."""
    trace: list[dict] = []

    def on_report(metrics, _checkpoint) -> None:
        trace.append({k: round(float(v), 4) for k, v in metrics.items()
                      if k.startswith("batch_health/") or k in ("iteration", "g_step", "s_step")})

    cfg = DistillConfig(dataset=recipe["dataset"], data_root=recipe["data_root"], teacher=str(teacher_path),
                        teacher_arch=recipe["arch"], seed=seed, device="cpu", log_every=args.log_every,
                        output=args.teacher_dir / f"{name}_{variant}_s{seed}",
                        **{"student": recipe["student"], **shared, **options})  # a variant may override these
    result = run_distillation(cfg, on_report=on_report)
    print(f"{name} {variant}: {result.line()}", flush=True)
    return {**result.to_dict(), "student": cfg.student, "batch_health_trace": trace, "sample_tv": sample_tv(cfg.output)}


def sample_tv(run_dir: Path, n: int = 512) -> float | None:
    """Total variation (the w_tv prior's measure) of n samples of a run's final generator in eval mode, fixed noise:
    how smooth the images the student learnt from are, next to the real images' value on the kd_real_data row."""
    path = run_dir / "generator.pt"
    if not path.exists():
        return None
    saved = torch.load(path, weights_only=True)
    generator = create_model_from_spec(saved["arch"])
    generator.load_state_dict(saved["state_dict"])
    generator.eval()
    with torch.no_grad():
        z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(1))
        return total_variation_loss(generator(z)).item()


def real_tv(recipe: dict, n: int = 2000) -> float:
    """The same measure on the first n real test images, normalised as the teacher sees them."""
    test = load_split(recipe["dataset"], "test", recipe["data_root"])
    return total_variation_loss(normalize(test.images[:n], test.spec)).item()


def _steps(run: dict, settings: dict) -> int:
    """A row's student steps (rows written before they were recorded: the shared budget's)."""
    return run.get("student_steps", settings["shared"]["student_steps"])


def _student(run: dict, teachers: dict) -> str:
    """A row's student (rows written before it was recorded: the teacher recipe's)."""
    return run.get("student", teachers[run["teacher"]]["student"])


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _warnings(run: dict) -> str:
    """The final health line's collapse flag and the first report whose batch looked collapsed (the live rule)."""
    h = run.get("health")
    if not h:
        return "-"
    classes = len(h["class_histogram"])
    live = next((int(t.get("iteration", 0)) for t in run.get("batch_health_trace", [])
                 if t.get("batch_health/top_class_fraction", 0) > 0.5
                 or t.get("batch_health/effective_classes", classes) < classes / 2), None)
    return f"{'yes' if h.get('collapsed') else 'no'} / {'no' if live is None else f'yes ({live})'}"


def write(args, settings: dict, teachers: dict, runs: list[dict], wall: float) -> None:
    rows = ["| teacher (test acc.) | student | seed | student acc. % | % of KD-real | eff. classes | top class "
            "| teacher conf. | agreement % | collapse warning: final / live (first step) | sample TV | train s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, info in teachers.items():
        mine = [r for r in runs if r["teacher"] == name]
        for r in sorted(mine, key=lambda r: (r["variant"] not in REFERENCES, r["seed"])):
            # the reference is the real-data KD student of the same seed, student steps and student
            ref = next((q["student_accuracy"] for q in mine if q["variant"] in REFERENCES and q["seed"] == r["seed"]
                        and _steps(q, settings) == _steps(r, settings)
                        and _student(q, teachers) == _student(r, teachers)), None)
            h = r.get("health") or {}
            share = None if ref is None or r["variant"] in REFERENCES else 100 * r["student_accuracy"] / ref
            rows.append(f"| {name} ({info['test_accuracy']:.2f}) | {r['variant']} | {r['seed']} "
                        f"| {r['student_accuracy']:.2f} | {_fmt(share)} | {_fmt(h.get('effective_classes'))} "
                        f"| {_fmt(h.get('top_class_fraction'), '.2f')} | {_fmt(h.get('mean_confidence'), '.2f')} "
                        f"| {_fmt(h.get('agreement'))} | {_warnings(r)} | {_fmt(r.get('sample_tv'), '.3f')} "
                        f"| {r['train_time_s']:.0f} |")
    summary = ["| teacher | student | seeds | student acc. %, mean +- std | min |", "|---|---|---|---|---|"]
    for name in teachers:
        for variant in dict.fromkeys(r["variant"] for r in runs if r["teacher"] == name):
            accs = [r["student_accuracy"] for r in runs if r["teacher"] == name and r["variant"] == variant]
            spread = f" +- {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
            summary.append(f"| {name} | {variant} | {len(accs)} | {statistics.mean(accs):.2f}{spread} "
                           f"| {min(accs):.2f} |")
    teacher_rows = "\n".join(f"- `{n}`: `{i['arch']}` on {i['dataset']}, {i['test_accuracy']:.2f}% test accuracy, "
                             f"trained here in {i['train_time_s']:.0f} s" for n, i in teachers.items())
    md = (f"# Any teacher: teachers outside the zoo, data-free students and their health ({settings['mode']})\n\n"
          f"Seeds: {args.seeds}. One seed is an observation, not an accuracy claim (those need 3 seeds).\n\n"
          f"Teachers (bare state_dicts, loaded by factory name):\n{teacher_rows}\n\n"
          f"Shared budget: `{json.dumps(settings['shared'])}`; variants: `{json.dumps(settings['variants'])}`. "
          f"`kd_real_data`: the same student, {settings['shared']['student_steps']} steps at batch "
          f"{settings['shared']['student_batch_size']} on real training images with the teacher's soft labels (T=4, "
          f"Adam one-cycle 2e-3); `kd_real_data_long`: the same at {REFERENCES['kd_real_data_long']['student_steps']} "
          "steps, the reference of the rdskd_long* rows; `*_gapnet` / `*_lenet5`: the GAP student gapnet_half / the "
          "full-width LeNet-5 instead of the teacher recipe's (% of KD-real compares runs of equal student steps and the same student). Health numbers (from 8 fresh batches of the final generator, no test data): "
          "effective classes = exp(entropy of the teacher's class histogram), top class = largest class share, "
          "teacher conf. = mean max-softmax, agreement = student-teacher top-1 agreement on those samples. Sample TV: "
          "the w_tv prior's measure (mean squared difference of neighbouring pixels, normalised inputs) on 512 samples "
          "of the final generator; on a kd_real_data row, on 2,000 real test images.\n\n"
          + "\n".join(rows) + "\n\nPer teacher and variant, over the seeds run (std: sample std):\n\n"
          + "\n".join(summary) + "\n")
    write_results(args.out_dir, args.name, {"settings": settings, "seeds": args.seeds, "teachers": teachers,
                                            "runs": runs, "wall_time_s": wall}, md)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", nargs="+", default=["gn_gap_cnn", "shufflenet_1ch", "small_cifar_cnn"],
                   choices=list(TEACHERS))
    p.add_argument("--variants", nargs="+", default=["rdskd", "dfad"], choices=[*VARIANTS, *REFERENCES],
                   help="kd_real_data*: the real-data KD references (the shared or the rdskd_long* student steps; the "
                        "teacher recipe's student or that of the *_gapnet / *_lenet5 variants)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--no-reference", action="store_true", help="skip the real-data KD reference")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--teacher-dir", type=Path, default=Path("runs/any_teacher"))
    p.add_argument("--name", default="any_teacher")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--resume", action="store_true", help="keep the runs already in the JSON")
    p.add_argument("--tiny", action="store_true", help="digits demo, the GroupNorm teacher, tiny budgets")
    args = p.parse_args(argv)
    if args.tiny:
        recipes = {"gn_gap_cnn": {**TEACHERS["gn_gap_cnn"], **TINY_TEACHER}}
        shared, variants = TINY_SHARED, {v: TINY_VARIANTS.get(v, VARIANTS.get(v, {})) for v in args.variants}
        args.log_every = 5
    else:
        recipes, shared = {n: TEACHERS[n] for n in args.teachers}, SHARED
        variants = {v: VARIANTS.get(v, {}) for v in args.variants}
    args.teacher_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{args.name}.json"
    old = json.loads(path.read_text()) if args.resume and path.exists() else {}
    runs, teachers = old.get("runs", []), old.get("teachers", {})
    settings = {"mode": "tiny (digits)" if args.tiny else "CPU scale", "shared": shared,
                "variants": {**old.get("settings", {}).get("variants", {}), **variants},
                "threads": torch.get_num_threads()}
    for r in runs:  # rows written before the sample-TV column: measured from what those runs left
        if "sample_tv" not in r and r["teacher"] in TEACHERS and not args.tiny:
            r["sample_tv"] = (real_tv(TEACHERS[r["teacher"]]) if r["variant"] in REFERENCES else
                              sample_tv(args.teacher_dir / f"{r['teacher']}_{r['variant']}_s{r['seed']}"))
    started = time.perf_counter()
    for name, recipe in recipes.items():
        teacher_path, acc, seconds = get_teacher(name, recipe, args)
        teachers[name] = {"arch": recipe["arch"], "dataset": recipe["dataset"], "test_accuracy": acc,
                          "train_time_s": seconds, "recipe": recipe, "student": recipe["student"]}
        for seed in args.seeds:
            todo = [*([] if args.no_reference else ["kd_real_data"]), *variants]
            for variant in todo:
                if any(r["teacher"] == name and r["variant"] == variant and r["seed"] == seed for r in runs):
                    continue
                if variant in REFERENCES:
                    reference = {"student_steps": shared["student_steps"], "student": recipe["student"],
                                 **REFERENCES[variant]}
                    row = kd_real_run(recipe, teacher_path, seed, reference["student_steps"],
                                      shared["student_batch_size"], reference["student"])
                    print(f"{name} {variant}: student_acc={row['student_accuracy']:.2f}% "
                          f"train={row['train_time_s']:.0f}s", flush=True)
                else:
                    row = distill_run(name, recipe, teacher_path, variant, variants[variant], shared, seed, args)
                runs.append({"teacher": name, "variant": variant, "seed": seed, **row})
                write(args, settings, teachers, runs, time.perf_counter() - started)
    write(args, settings, teachers, runs, time.perf_counter() - started)


if __name__ == "__main__":
    main()
