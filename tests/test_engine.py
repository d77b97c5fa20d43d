"""The loop: schedules, bit-identical resume, non-finite detection, outputs, end to end."""

import json

import pytest
import torch

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec
from rdskd_dist.engine import run_distillation, schedule_steps
from rdskd_dist.engine.resolve import resolve_config
from rdskd_dist.errors import NonFiniteLossError, UserError
from rdskd_dist.teachers import load_teacher

TINY = dict(dataset="digits", batch_size=32, log_every=2, eval_teacher=False)


@pytest.mark.parametrize("method,expected", [
    ("rdskd", (7, 3, 4)),  # two-stage: 3 generator steps then 4 student steps
    ("dafl", (4, 4, 4)),  # joint: one generator and one student step per iteration
    ("dfad", (2, 2, 4)),  # adversarial: 2 student steps per generator step
])
def test_schedules_count_steps(digits_teacher, method, expected):
    cfg = DistillConfig(teacher=str(digits_teacher), method=method, generator_steps=3, student_steps=4,
                        student_steps_per_generator_step=2, **TINY)
    assert schedule_steps(resolve_config(cfg, get_spec("digits"))) == expected
    reports = []
    run_distillation(cfg, on_report=lambda m, c: reports.append(m))
    assert (reports[-1]["iteration"], reports[-1]["g_step"], reports[-1]["s_step"]) == expected


def test_adversarial_budget_must_divide():
    """Checked when the config resolves, before a teacher is loaded or a step runs."""
    with pytest.raises(UserError, match="multiple"):
        resolve_config(DistillConfig(method="dfad", student_steps=7, student_steps_per_generator_step=5),
                       get_spec("digits"))


def test_second_stage_generator_steps_chase_the_student_and_feed_its_batches(digits_teacher):
    """adversarial_every: one more generator step every N student steps of stage 2, rewarded (w_adv) for samples
    the student gets wrong where it agrees with the teacher's class; its batches join what the student draws."""
    from rdskd_dist.engine import Distiller

    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    cfg = DistillConfig(method="rdskd", generator_steps=3, student_steps=8, sample_pool=2, memory_bank=64,
                        adversarial_every=2, w_adv=1.0, **TINY)
    assert schedule_steps(resolve_config(cfg, spec)) == (11, 7, 8)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    reports = []
    engine.run(on_report=lambda m, c: reports.append(m))
    assert (reports[-1]["g_step"], reports[-1]["s_step"]) == (7, 8)
    assert len(engine.samples.adversarial) == 4 * 32 and len(engine.samples.bank) == 64  # the bank stays stage 1's
    assert "g/disagree" not in reports[1] and reports[-1]["g/disagree"] > 0  # stage 1: no student to chase yet
    drawn = engine.samples.pooled()[0]  # 4 x 32 stage-2 samples against 2 x 32 + 64 in the pool: half a batch
    assert drawn.shape[0] == 32 and (drawn[:, None] == engine.samples.adversarial.contents()[0][None]).flatten(2) \
        .all(2).any(1).sum() == 16
    with pytest.raises(UserError, match="two_stage"):  # DAFL trains jointly: no second stage to do it in
        resolve_config(DistillConfig(method="dafl", memory_bank=64, adversarial_every=2, **TINY), spec)
    with pytest.raises(ValueError, match="sample_pool or a memory_bank"):
        DistillConfig(method="rdskd", adversarial_every=2, **TINY)


def _losses(teacher_path, method, checkpoint=None, stop_after=None, **extra):
    """Run a distillation, optionally stopping after `stop_after` reports (a simulated crash)."""
    cfg = DistillConfig(teacher=str(teacher_path), method=method, generator_steps=4, student_steps=6,
                        student_steps_per_generator_step=2, checkpoint_every=2 if checkpoint else 0,
                        checkpoint=checkpoint, **TINY, **extra)
    reports = []

    def on_report(metrics, _ckpt):
        reports.append(metrics)
        if stop_after is not None and len(reports) == stop_after:  # after the checkpoint was written
            raise KeyboardInterrupt

    try:
        result = run_distillation(cfg, on_report=on_report)
    except KeyboardInterrupt:
        return reports, None
    return reports, result


@pytest.mark.parametrize("method,extra", [
    ("rdskd", {}), ("rdskd", {"sample_pool": 3, "penalty_refresh": "ema"}), ("dafl", {}), ("dfad", {}),
    ("dfad_ar_vi", {}),
    ("rdskd", {"sample_pool": 2, "memory_bank": 40, "augment_shift": 2, "augment_mixup": 1.0,
               "student_lr_schedule": "onecycle", "student_batch_size": 12}),
    ("dfad_ar_vi", {"memory_bank": 20, "augment_shift": 1}),
    ("rdskd", {"generators": 2, "sample_pool": 2, "memory_bank": 40, "augment_rotate": 10.0, "augment_scale": 0.1}),
    ("rdskd", {"pool_snapshots": 2, "sample_pool": 3, "memory_bank": 40}),
    ("rdskd", {"sample_pool": 2, "memory_bank": 40, "adversarial_every": 2, "w_adv": 1.0}),  # stage 2's store
])
def test_save_restore_continue_is_bit_identical(digits_teacher, tmp_path, method, extra):
    straight, result = _losses(digits_teacher, method, **extra)
    ckpt = tmp_path / "engine.pt"
    first, _ = _losses(digits_teacher, method, checkpoint=ckpt, stop_after=3, **extra)  # stops in stage 2
    assert ckpt.exists()
    resumed, resumed_result = _losses(digits_teacher, method, checkpoint=ckpt, **extra)
    drop = lambda ms: [{k: v for k, v in m.items() if k not in ("samples_per_s", "train_time_s")} for m in ms]  # noqa: E731
    assert drop(first + resumed) == drop(straight)  # exact equality: no tolerance
    assert resumed_result.student_accuracy == result.student_accuracy


def test_checkpoint_loads_weights_only(digits_teacher, tmp_path):
    ckpt = tmp_path / "engine.pt"
    _losses(digits_teacher, "rdskd", checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["iteration"] == 10 and state["format"] == "rdskd-engine/1"


def test_non_finite_loss_stops_with_step_and_term(digits_teacher):
    cfg = DistillConfig(teacher=str(digits_teacher), method="dafl", student_steps=6, lr_student=1e30, **TINY)
    with pytest.raises(NonFiniteLossError, match=r"loss term 's/total' became NaN or inf at step \d"):
        run_distillation(cfg)


def test_outputs_written_and_student_rebuilds(digits_teacher, tmp_path):
    cfg = DistillConfig(teacher=str(digits_teacher), generator_steps=2, student_steps=2, output=tmp_path / "out", **TINY)
    result = run_distillation(cfg)
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["student_accuracy"] == result.student_accuracy
    assert saved["teacher"]["sha256"] and saved["config"]["method"] == "rdskd"
    student = torch.load(tmp_path / "out" / "student.pt", weights_only=True)
    from rdskd_dist.teachers import build_from_state_dict

    model = build_from_state_dict(student["arch"], student["state_dict"], "student")
    assert model.spec["name"] == "lenet5_half"


def test_student_average_becomes_the_student_at_the_end_and_survives_a_restore(digits_teacher):
    """--student-ema: an EMA of the student's weights over its steps, adopted at the end of the budget."""
    from rdskd_dist.engine import Distiller, unwrap

    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    decay = 0.5
    cfg = DistillConfig(method="rdskd", generator_steps=2, student_steps=4, student_ema=decay, **TINY)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    raw = []
    while engine.iteration < engine.total_iterations:
        before = engine.s_step
        engine.step()
        if engine.s_step > before:
            raw.append({k: v.clone() for k, v in unwrap(engine.student).state_dict().items()})
    state = engine.state_dict()
    engine.run()  # nothing left to train: adopts the average
    expected = raw[0]
    for weights in raw[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    adopted = unwrap(engine.student).state_dict()
    assert len(raw) == 4 and all(torch.allclose(adopted[k], expected[k], atol=1e-6) for k in expected)
    assert any(not torch.allclose(adopted[k], raw[-1][k]) for k in adopted)  # not just the last step's weights
    restored = Distiller(cfg, teacher, spec, torch.device("cpu"))
    restored.load_state_dict(state)
    restored.run()
    assert all(torch.equal(unwrap(restored.student).state_dict()[k], adopted[k]) for k in adopted)


def test_user_module_teacher(digits_teacher):
    teacher, _ = load_teacher(digits_teacher, get_spec("digits"))
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1024, 10))  # logits only
    cfg = DistillConfig(method="rdskd", generator_steps=2, student_steps=2, **TINY)
    assert run_distillation(cfg, teacher=plain).generator_steps == 2
    # DAFL's activation term takes the input of the last Linear (a hook); without a Linear there is none
    assert run_distillation(cfg.model_copy(update={"method": "dafl"}), teacher=plain).generator_steps == 2
    conv_only = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 32), torch.nn.Flatten())
    with pytest.raises(UserError, match="penultimate"):
        run_distillation(cfg.model_copy(update={"method": "dafl"}), teacher=conv_only)
    with pytest.raises(UserError, match="activation term .* of rdskd needs the teacher's penultimate"):
        run_distillation(cfg.model_copy(update={"w_a": 0.1}), teacher=conv_only)


@pytest.mark.slow
def test_end_to_end_digits_beats_chance_by_far(digits_teacher):
    cfg = DistillConfig(teacher=str(digits_teacher), dataset="digits", method="rdskd", generator_steps=60,
                        student_steps=600, batch_size=64, sample_pool=40, log_every=60, precision="auto",
                        channels_last=True)
    result = run_distillation(cfg)
    assert result.teacher_accuracy > 90
    assert result.student_accuracy > 60, result.line()  # chance is 10%


@pytest.mark.parametrize("method", ["rdskd", "dafl", "dfad"])
def test_phase_times_split_the_training_time(digits_teacher, method):
    cfg = DistillConfig(teacher=str(digits_teacher), method=method, generator_steps=2, student_steps=4,
                        student_steps_per_generator_step=2, sample_pool=2 if method == "rdskd" else 0,
                        time_phases=True, **TINY)
    reports = []
    result = run_distillation(cfg, on_report=lambda m, c: reports.append(m))
    totals = {p: sum(r[f"time/{p}_s"] for r in reports) for p in ("generator", "teacher", "student")}
    assert all(t > 0 for t in totals.values()), totals
    # the phases cover the steps, and the steps are the training time (reporting excluded)
    assert 0.5 * result.train_time_s < sum(totals.values()) <= result.train_time_s * 1.01 + 1e-3


def test_phase_times_are_off_by_default(digits_teacher):
    reports = []
    run_distillation(DistillConfig(teacher=str(digits_teacher), generator_steps=2, student_steps=2, **TINY),
                     on_report=lambda m, c: reports.append(m))
    assert not any(k.startswith("time/") for r in reports for k in r)


def test_stored_outputs_concatenate_without_a_feature_that_one_part_lacks():
    """A bank restored without the teacher's features, joined by a pool that has them: that field becomes None
    (the student's batches are relabelled), the others concatenate."""
    from rdskd_dist.engine.samples import _cat
    from rdskd_dist.models.base import Features

    with_features = Features(torch.ones(2, 10), torch.ones(2, 4), torch.ones(2, 4))
    logits_only = Features(torch.zeros(3, 10), None, None)
    joined = _cat([with_features, logits_only])
    assert joined.logits.shape == (5, 10) and joined.penultimate is None and joined.preact is None
    assert _cat([with_features, with_features]).preact.shape == (4, 4)
