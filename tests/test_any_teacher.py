"""Any teacher: plain nn.Modules get every method (hooked features), teachers by torchvision or factory name,
and the health report on fresh generated samples (no test data)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec
from rdskd_dist.engine import run_distillation
from rdskd_dist.engine.health import summarize
from rdskd_dist.errors import UserError
from rdskd_dist.teachers import load_teacher

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", generator_steps=2, student_steps=2, student_steps_per_generator_step=1, batch_size=8,
            log_every=1, eval_teacher=False, device="cpu")


class PlainCNN(nn.Module):
    """No zoo, no BatchNorm: GroupNorm, global average pooling and one Linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))


def plain_teacher() -> nn.Module:
    torch.manual_seed(0)
    return PlainCNN()


def _run(teacher, **extra):
    reports = []
    result = run_distillation(DistillConfig(**{**TINY, **extra}), teacher=teacher,
                              on_report=lambda m, _c: reports.append(m))
    return result, {k for r in reports for k in r}


@pytest.mark.parametrize("method,needs", [
    ("rdskd", {"g/oh", "g/ie", "g/ds"}),
    ("dafl", {"g/a"}),  # the activation term on the hooked penultimate feature
    ("dfad", {"g/adv"}),
    ("dfad_ar_vi", {"s/ar", "s/vi"}),  # the activation regulariser on the penultimate feature by default
])
def test_plain_module_gets_every_method(method, needs, capsys):
    result, keys = _run(plain_teacher(), method=method)
    assert needs <= keys
    assert result.health["samples"] == 8 * 8 and sum(result.health["class_histogram"]) == 64
    err = capsys.readouterr().err
    assert "note: teacher has no BatchNorm layers: the BN-statistics term (w_bn) is unavailable" in err


def test_hooked_features_and_shapes():
    from rdskd_dist.teachers import teacher_from_module

    teacher, _ = teacher_from_module(plain_teacher(), get_spec("digits"), "body.4")
    assert (teacher.penultimate_dim, teacher.preact_shape, teacher.preact_spatial) == (16, (16, 16, 16), True)
    out = teacher(torch.zeros(3, 1, 32, 32), features=True)
    assert out.logits.shape == (3, 10) and out.penultimate.shape == (3, 16) and out.trunk.shape == (3, 16)
    assert out.preact.shape == (3, 16, 16, 16)
    assert not teacher.module._forward_hooks and not teacher.module.head._forward_pre_hooks  # hooks removed


def test_named_feature_layer(capsys):
    """A spatial GroupNorm output as the AR feature: the student's vector is mapped to its 16 channels."""
    result, keys = _run(plain_teacher(), method="dfad_ar_vi", teacher_feature_layer="body.4")
    assert "s/ar" in keys and result.student_steps == 2


def test_the_feature_hint_on_a_plain_module_and_a_named_spatial_layer():
    """w_hint takes the hooked penultimate feature by default, and a named feature map pooled to a vector."""
    for layer in (None, "body.4"):
        result, keys = _run(plain_teacher(), method="rdskd", w_hint=1.0, teacher_feature_layer=layer)
        assert "s/hint" in keys and result.student_steps == 2


def test_wrong_layer_name_lists_valid_names():
    with pytest.raises(UserError) as info:
        _run(plain_teacher(), method="dfad_ar_vi", teacher_feature_layer="body.9")
    message = str(info.value)
    assert "\n" not in message and "'body.9'" in message
    assert "valid: body.0, body.1, body.2, body.3, body.4, body.5, pool, head" in message


def test_no_linear_needs_a_named_layer():
    torch.manual_seed(0)
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(UserError, match="--teacher-feature-layer .candidates: 0, 1, 2, 3"):
        _run(conv_only, method="dfad_ar_vi")
    with pytest.raises(UserError, match="rdskd's feature hint .w_hint > 0. needs a teacher feature.*--w-hint 0"):
        _run(conv_only, method="rdskd", w_hint=1.0)
    result, keys = _run(conv_only, method="dfad_ar_vi", teacher_feature_layer="1")
    assert "s/ar" in keys


def test_torchvision_teacher_by_name_through_the_cli(tmp_path):
    """A bare state_dict of a grey-input torchvision resnet18, loaded with --teacher-arch torchvision:resnet18."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    path = tmp_path / "resnet18_digits.pt"
    torch.save(model.state_dict(), path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "rdskd_dist.train", "--dataset", "digits", "--teacher", str(path),
         "--teacher-arch", "torchvision:resnet18", "--method", "dfad_ar_vi", "--teacher-feature-layer", "layer4",
         "--w-bn", "0.1", "--generator-steps", "2", "--student-steps", "2", "--student-steps-per-generator-step", "1",
         "--batch-size", "8", "--no-eval-teacher", "--device", "cpu", "--output", str(out), "--no-tracking"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: teacher has no BatchNorm" not in proc.stderr  # resnet18 has BN: the w_bn term runs
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("result:")][-1]
    assert " agree=" in line and " eff_classes=" in line
    result = json.loads((out / "result.json").read_text())
    assert result["teacher"]["arch"]["name"] == "torchvision:resnet18"
    assert result["config"]["teacher_feature_layer"] == "layer4"
    assert set(result["health"]) >= {"agreement", "effective_classes", "class_histogram", "mean_confidence"}


def test_teacher_by_factory_and_bad_names(tmp_path, monkeypatch):
    (tmp_path / "my_teachers.py").write_text(
        "import torch.nn as nn\n"
        "def small(num_classes, in_channels=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(4, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_teachers

    path = tmp_path / "small.pt"
    torch.save(my_teachers.small(num_classes=10, in_channels=1).state_dict(), path)
    spec = get_spec("digits")
    teacher, meta = load_teacher(path, spec, arch="my_teachers:small")
    assert meta["arch"]["name"] == "my_teachers:small" and teacher.penultimate_dim == 4
    for arch, message in [("torchvision:resnet9000", "unknown torchvision model 'resnet9000'"),
                          ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
                          ("my_teachers:nothing", "has no attribute 'nothing'")]:
        with pytest.raises(UserError, match=message):
            load_teacher(path, spec, arch=arch)
    with pytest.raises(ValueError, match="unknown model"):  # names without ':' are still zoo names
        DistillConfig(teacher_arch="resnet9000")


def test_health_flags_a_collapsed_run(capsys):
    teacher = plain_teacher()
    with torch.no_grad():
        teacher.head.bias.zero_()
        teacher.head.bias[3] = 50.0  # every sample is class 3
    result, _ = _run(teacher, method="rdskd")
    health = result.health
    assert health["collapsed"] and health["top_class_fraction"] == 1.0 and health["class_histogram"][3] == 64
    assert health["effective_classes"] == pytest.approx(1.0)
    err = capsys.readouterr().err
    assert "warning: generated samples collapsed: class 3 holds 100% of 64 fresh samples" in err
    assert "eff_classes=1.0" in result.line()


def test_health_counts_the_stored_samples_the_student_drew_from(digits_teacher, capsys):
    """A two-stage run with a memory bank and a pool: the stored samples' classes are reported beside the final
    generator's, and a generator that collapses after the samples were stored is told apart from a student that
    never saw the other classes."""
    from rdskd_dist.engine import Distiller, prepare_teacher
    from rdskd_dist.engine.health import generation_health, result_suffix, warn_if_collapsed
    from rdskd_dist.engine.samples import unwrap

    cfg = DistillConfig(**{**TINY, "teacher": str(digits_teacher), "method": "rdskd", "schedule": "two_stage",
                           "generator_steps": 6, "student_steps": 2, "memory_bank": 32, "sample_pool": 4})
    engine = Distiller(cfg, prepare_teacher(cfg, None)[0], get_spec("digits"), torch.device("cpu"))
    engine.run()
    health = generation_health(engine)
    # the bank holds stage 1's last 32 samples, the pool four batches of 8 from the final generator
    assert health["stored_samples"] == 32 + 4 * 8 == sum(health["stored_class_histogram"])
    labels = engine.samples.pool[1].logits.argmax(1)
    assert health["stored_class_histogram"] == torch.bincount(labels, minlength=10).tolist()
    assert not health["stored_collapsed"] and health["stored_effective_classes"] > 5
    with torch.no_grad():  # the generator now makes one image whatever the noise; the stored samples stay
        unwrap(engine.generator).l1.weight.zero_()
    after = generation_health(engine)
    assert after["collapsed"] and after["effective_classes"] == pytest.approx(1.0)
    assert {k: v for k, v in after.items() if k.startswith("stored_")} == \
        {k: v for k, v in health.items() if k.startswith("stored_")}
    capsys.readouterr()
    assert warn_if_collapsed(after)
    err = capsys.readouterr().err
    assert "warning: the final generator's samples collapsed (class " in err and "100% of 64 fresh samples" in err
    assert "but the stored samples the student drew from did not" in err
    assert f" stored_eff_classes={after['stored_effective_classes']:.1f}" in result_suffix(after)


def test_collapse_warning_names_what_collapsed(capsys):
    from rdskd_dist.engine.health import warn_if_collapsed

    spread = summarize([10, 10, 10, 10, 10, 10, 10, 10, 10, 10], agree=0.0, confidence=0.0)
    one = summarize([0, 0, 0, 100, 0, 0, 0, 0, 0, 0], agree=0.0, confidence=0.0)
    stored = lambda h: {f"stored_{k}": h[k] for k in ("samples", "effective_classes", "top_class_fraction",
                                                      "collapsed", "class_histogram")}
    cases = [({**one, **stored(one)}, "generated samples collapsed: class 3 holds 100% of 100 fresh samples, 1.0 "
              "effective classes of 10; so did the stored samples the student drew from (class 3 holds 100% of 100 "
              "stored samples"),
             ({**one, **stored(spread)}, "the final generator's samples collapsed (class 3 holds 100% of 100 fresh "
              "samples, 1.0 effective classes of 10), but the stored samples the student drew from did not"),
             ({**spread, **stored(one)}, "the stored samples the student drew from collapsed (class 3 holds 100% of "
              "100 stored samples"),
             (one, "generated samples collapsed: class 3 holds 100% of 100 fresh samples")]
    for health, expected in cases:
        assert warn_if_collapsed(health)
        err = capsys.readouterr().err
        assert err.startswith("warning: ") and expected in err and err.count("\n") == 1
    assert not warn_if_collapsed({**spread, **stored(spread)}) and not capsys.readouterr().err


def test_health_flags_a_student_that_did_not_learn(digits_teacher, capsys):
    """A dead student (every ReLU off: one constant output) is flagged from generated samples alone, with its own
    warning, while the teacher's labels on the same samples stay spread; the live student is not."""
    from rdskd_dist.engine import Distiller, prepare_teacher
    from rdskd_dist.engine.health import generation_health, result_suffix, warn_if_collapsed
    from rdskd_dist.engine.samples import unwrap

    cfg = DistillConfig(**{**TINY, "teacher": str(digits_teacher), "method": "rdskd", "generator_steps": 20,
                           "student_steps": 100, "batch_size": 32, "lr_student": 5e-3, "student_optimizer": "adam"})
    engine = Distiller(cfg, prepare_teacher(cfg, None)[0], get_spec("digits"), torch.device("cpu"))
    engine.run()
    alive = generation_health(engine)
    assert not alive["collapsed"] and not alive["student_collapsed"] and alive["student_effective_classes"] > 5
    capsys.readouterr()
    assert not warn_if_collapsed(alive) and not capsys.readouterr().err
    with torch.no_grad():  # what DFAD+AR+VI's student on the CIFAR-10 teacher became (session 30): fc1 all dead
        student = unwrap(engine.student)
        student.fc1.weight.zero_()
        student.fc1.bias.fill_(-1.0)
    dead = generation_health(engine)
    assert dead["student_collapsed"] and dead["student_top_class_fraction"] == 1.0
    assert dead["student_effective_classes"] == pytest.approx(1.0) and sum(dead["student_class_histogram"]) == 256
    assert {k: v for k, v in dead.items() if not k.startswith("student_") and k != "agreement"} == \
        {k: v for k, v in alive.items() if not k.startswith("student_") and k != "agreement"}
    assert warn_if_collapsed(dead)
    err = capsys.readouterr().err
    assert err.startswith("warning: the student did not learn: class ") and err.count("\n") == 1
    assert "100% of its predictions on 256 fresh samples, 1.0 effective classes of 10" in err
    assert " student_eff_classes=1.0" in result_suffix(dead)


def test_health_is_quiet_on_a_healthy_run(digits_teacher, tmp_path, capsys):
    cfg = DistillConfig(dataset="digits", teacher=str(digits_teacher), method="rdskd", generator_steps=20,
                        student_steps=4, batch_size=32, log_every=10, eval_teacher=False, device="cpu",
                        output=tmp_path)
    result = run_distillation(cfg)
    assert not result.health["collapsed"] and result.health["effective_classes"] > 5
    assert 0.0 <= result.health["agreement"] <= 100.0 and 0.1 < result.health["mean_confidence"] <= 1.0
    err = capsys.readouterr().err
    assert "warning: generated samples collapsed" not in err and "warning: generated samples collapsing" not in err
    assert json.loads((tmp_path / "result.json").read_text())["health"] == result.health


def test_health_numbers_and_metrics():
    from rdskd_dist.engine.health import flat_health, health_from_flat
    from rdskd_dist.tracking.names import final_metrics

    balanced = summarize([10] * 10, agree=50, confidence=80.0)
    assert balanced["effective_classes"] == pytest.approx(10.0) and not balanced["collapsed"]
    assert balanced["agreement"] == 50.0 and balanced["mean_confidence"] == 0.8
    assert summarize([60, 40] + [0] * 8, agree=0, confidence=0)["collapsed"]  # over half in one class
    assert summarize([25, 25, 25, 25] + [0] * 6, agree=0, confidence=0)["collapsed"]  # 4 of 10 classes in effect
    metrics = final_metrics({"student_accuracy": 90.0, "health": balanced})
    assert metrics["health/effective_classes"] == pytest.approx(10.0) and metrics["health/collapsed"] == 0.0
    assert "health/class_histogram" not in metrics
    flat = flat_health(balanced)
    assert health_from_flat(flat) == {k: v for k, v in balanced.items() if k != "class_histogram"}
    assert final_metrics(flat)["health/agreement"] == 50.0  # a Ray Train result carries them flat
    probed = {**balanced, "probe_samples": 20, "probe_student_accuracy": 55.0, "probe_teacher_accuracy": 90.0}
    assert final_metrics({"health": probed})["health/probe_student_accuracy"] == 55.0
    assert flat_health(probed)["health/probe_teacher_accuracy"] == 90.0
    stored = {**probed, "stored_samples": 640, "stored_effective_classes": 9.5, "stored_top_class_fraction": 0.2,
              "stored_collapsed": True}
    back = health_from_flat(flat_health(stored))  # Ray Train's flat metrics carry floats only
    assert back == {k: v for k, v in stored.items() if k != "class_histogram"}
    assert type(back["stored_collapsed"]) is bool and type(back["stored_samples"]) is int


# ---------------------------------------------------------------- inputs from options (--image-size, mean, std)

def _rgb28_teacher() -> nn.Module:
    torch.manual_seed(0)
    return PlainCNN(in_channels=3)


RGB28 = dict(image_size=28, teacher_mean=[0.5, 0.5, 0.5], teacher_std=[0.25, 0.25, 0.25], student="wrn16_1")


def test_input_spec_from_options():
    from rdskd_dist.data import input_spec

    spec = input_spec(DistillConfig(dataset="digits", **RGB28))
    assert (spec.image_size, spec.channels, spec.mean, spec.std) == (28, 3, (0.5,) * 3, (0.25,) * 3)
    assert spec.with_input(28, [0.5] * 3, [0.25] * 3) == spec  # applying the options again changes nothing
    assert input_spec(DistillConfig(dataset="digits")) == get_spec("digits")
    same = input_spec(DistillConfig(dataset="cifar10", teacher_mean=[0.5, 0.5, 0.5]))  # std stays the dataset's
    assert same.channels == 3 and same.std == get_spec("cifar10").std
    for bad, message in [
        (dict(image_size=30), "image_size must be a positive multiple of 4"),
        (dict(teacher_mean=[0.5, 0.5, 0.5]), "a 3-channel teacher on digits .* needs both teacher_mean and teacher_std"),
        (dict(teacher_mean=[0.5], teacher_std=[0.2, 0.2, 0.2]), "teacher_mean has 1 values but teacher_std has 3"),
        (dict(teacher_mean=[0.5, 0.5], teacher_std=[0.2, 0.2]), "a teacher of 2 channels is not supported"),
        (dict(teacher_std=[0.0]), "teacher_std values must be positive"),
        (dict(teacher_mean=[]), "teacher_mean: give one value per input channel"),
    ]:
        with pytest.raises(ValueError, match=message):
            DistillConfig(dataset="digits", **bad)


def test_generator_follows_the_input_size():
    from rdskd_dist.models import create_model

    for size in (28, 64):
        generator = create_model("dafl_generator", latent_dim=8, out_channels=3, image_size=size).eval()
        assert generator(torch.randn(2, 8)).shape == (2, 3, size, size)
    with pytest.raises(UserError, match="multiple of 4"):
        create_model("dafl_generator", image_size=30)


def test_evaluation_data_resized_and_converted():
    from rdskd_dist.data import load_split

    own = load_split("digits", "test")
    assert load_split("digits", "test", spec=get_spec("digits").with_input(32)).images.equal(own.images)
    spec = get_spec("digits").with_input(28, [0.5] * 3, [0.25] * 3)
    data = load_split("digits", "test", spec=spec)  # resized from the native 8x8, grey repeated
    assert data.images.shape == (360, 3, 28, 28) and data.images.dtype == torch.uint8
    assert data.images[:, 0].equal(data.images[:, 2]) and data.labels.equal(own.labels)
    x = data.normalized(slice(0, 4))
    torch.testing.assert_close(x, (data.images[:4].float() / 255 - 0.5) / 0.25)
    again = own.to_spec(spec)  # the path of a test split loaded at the dataset's size (Ray Train workers)
    assert again.images.shape == (360, 3, 28, 28) and again.spec == spec
    grey = again.to_spec(get_spec("digits").with_input(28))  # colour back to luminance
    assert grey.images.shape == (360, 1, 28, 28) and (grey.images.int() - again.images[:, :1].int()).abs().max() <= 1


def test_non_32_rgb_teacher_on_grey_data_with_a_probe_set(tmp_path, capsys):
    """A 3-channel 28x28 plain teacher on the grey digits: generator, student, test split and probe set follow."""
    import numpy as np

    from rdskd_dist.engine import Distiller
    from rdskd_dist.engine.loop import unwrap

    cfg = DistillConfig(**{**TINY, **RGB28}, method="rdskd")
    from rdskd_dist.models import LogitsOnly

    # an unprobed hooked teacher: the engine learns its feature shapes on 3x28x28 inputs
    engine = Distiller(cfg, LogitsOnly(_rgb28_teacher()), get_spec("digits"), torch.device("cpu"))
    assert unwrap(engine.generator)(torch.randn(2, cfg.latent_dim or 100)).shape == (2, 3, 28, 28)
    assert engine.teacher.penultimate_dim == 16 and engine.spec.image_size == 28

    rng = np.random.default_rng(0)
    probe = tmp_path / "probe.npz"  # grey 8x8, like the digits: resized and repeated to 3x28x28
    np.savez(probe, images=rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8), labels=np.arange(20) % 10)
    result, keys = _run(_rgb28_teacher(), **RGB28, probe_data=probe, eval_teacher=True, output=tmp_path / "out")
    health = result.health
    assert health["probe_samples"] == 20 and 0 <= health["probe_student_accuracy"] <= 100
    assert 0 <= health["probe_teacher_accuracy"] <= 100 and result.teacher_accuracy is not None
    assert "probe_student_acc=" in result.line() and "probe_teacher_acc=" in result.line()
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["health"]["probe_samples"] == 20 and saved["config"]["image_size"] == 28
    assert {"batch_health/effective_classes", "batch_health/mean_confidence"} <= keys


def test_lenet5_at_other_input_sizes():
    """The reference net at 32x32; at smaller sizes conv1/conv2 pad so that conv3 still sees a map, not a pixel."""
    from rdskd_dist.models import create_model

    reference = create_model("lenet5", image_size=32)
    assert reference.conv1.padding == (0, 0) and reference.conv3.kernel_size == (5, 5)
    assert sum(p.numel() for p in reference.parameters()) == 61706  # LeNet-5 as DAFL and RDSKD define it
    for size, conv3 in ((16, 4), (28, 4), (24, 4), (40, 7)):
        model = create_model("lenet5_half", image_size=size)
        assert model.conv3.kernel_size == (conv3, conv3)
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_teacher_trained_at_16_and_a_size_mismatch_says_which(digits_teacher, tmp_path):
    from rdskd_dist.teacher_training import TeacherConfig, train_teacher
    from rdskd_dist.teachers import save_teacher

    model, accuracy = train_teacher(TeacherConfig(dataset="digits", image_size=16, epochs=3, lr=1e-2,
                                                  out=tmp_path / "t16.pt"), log=lambda _msg: None)
    assert model.spec["image_size"] == 16 and accuracy > 50  # learns from the 16x16 digits
    save_teacher(model, tmp_path / "t16.pt", dataset="digits", test_accuracy=accuracy)
    teacher, meta = load_teacher(tmp_path / "t16.pt", get_spec("digits").with_input(16))
    assert teacher(torch.zeros(2, 1, 16, 16)).shape == (2, 10) and meta["arch"]["image_size"] == 16
    with pytest.raises(UserError, match=r"was trained on 16x16 inputs and does not fit 32x32: pass --image-size 16"):
        load_teacher(tmp_path / "t16.pt", get_spec("digits"))
    with pytest.raises(UserError, match=r"was trained on 32x32 inputs and does not fit 28x28: pass --image-size 32"):
        load_teacher(digits_teacher, get_spec("digits").with_input(28))


# ---------------------------------------------------------------- --probe-data

def _probe_file(tmp_path, name, **content):
    import numpy as np

    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, **content)
    else:
        torch.save(content, path)
    return path


def test_probe_data_formats(tmp_path):
    from rdskd_dist.data import load_probe

    spec = get_spec("digits")
    images, labels = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8), torch.tensor([0, 1, 2, 3, 4, 9])
    pt = load_probe(_probe_file(tmp_path, "p.pt", images=images, labels=labels), spec)
    npz = load_probe(_probe_file(tmp_path, "p.npz", images=images.numpy(), labels=labels.numpy()), spec)
    assert pt.images.shape == (6, 1, 32, 32) and pt.images.equal(npz.images) and pt.labels.equal(labels)


@pytest.mark.parametrize("name,content,message", [
    ("missing.pt", None, "probe set file not found"),
    ("p.csv", dict(images=1), "unknown format '.csv'; use .pt"),
    ("p.pt", dict(images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8)), "has no 'labels'"),
    ("p.pt", dict(images=torch.zeros(2, 1, 8, 8), labels=torch.zeros(2, dtype=torch.int64)), "must be uint8 N x C"),
    ("p.pt", dict(images=torch.zeros(2, 8, 8, dtype=torch.uint8), labels=torch.zeros(2, dtype=torch.int64)),
     "must be uint8 N x C x H x W"),
    ("p.pt", dict(images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8), labels=torch.zeros(3, dtype=torch.int64)),
     r"'labels' must be int64 of shape \(2,\)"),
    ("p.pt", dict(images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8), labels=torch.tensor([0, 10])),
     "labels span 0..10, but digits has classes 0..9"),
    ("p.pt", dict(images=torch.zeros(2, 2, 8, 8, dtype=torch.uint8), labels=torch.zeros(2, dtype=torch.int64)),
     "images have 2 channels"),
    ("p.pt", dict(images=torch.zeros(2, 1, 8, 8, dtype=torch.uint8), labels=torch.zeros(2, dtype=torch.int64),
                  note=Path("x")), "refusing to load probe set"),  # pickled objects other than tensors
    ("p.npz", dict(images=[[1]], labels=[object()]), "only plain numeric arrays"),
])
def test_bad_probe_file_is_one_line_before_training(tmp_path, name, content, message):
    path = tmp_path / name if content is None else _probe_file(tmp_path, name, **content)
    if name.endswith(".npz"):
        import numpy as np

        np.savez(path, images=np.zeros((1, 1, 2, 2), np.uint8), labels=np.array([object()], dtype=object))
    reports = []
    with pytest.raises(UserError, match=message) as info:
        run_distillation(DistillConfig(**TINY, probe_data=path), teacher=plain_teacher(),
                         on_report=lambda m, _c: reports.append(m))
    assert "\n" not in str(info.value) and not reports  # refused before the first step


# ---------------------------------------------------------------- health during the run

def test_live_health_in_every_report_and_one_warning(capsys):
    teacher = plain_teacher()
    with torch.no_grad():
        teacher.head.bias.zero_()
        teacher.head.bias[3] = 50.0  # every sample is class 3, from the first batch on
    reports = []
    run_distillation(DistillConfig(**TINY), teacher=teacher,
                     on_report=lambda m, _c: reports.append(m))
    assert len(reports) == 4
    for m in reports:
        assert m["batch_health/effective_classes"] == pytest.approx(1.0)
        assert m["batch_health/top_class_fraction"] == 1.0 and 0.99 < m["batch_health/mean_confidence"] <= 1.0
    err = capsys.readouterr().err
    assert err.count("warning: generated samples collapsing") == 1 and "at step 1: class 3 holds 100%" in err
    assert err.count("warning: generated samples collapsed:") == 1  # the final health line, once too


def test_live_health_warning_state_survives_resume():
    from rdskd_dist.engine import Distiller

    cfg = DistillConfig(**TINY)
    engine = Distiller(cfg, plain_teacher(), get_spec("digits"), torch.device("cpu"))
    engine.live.warned = True
    state = engine.state_dict()
    other = Distiller(cfg, plain_teacher(), get_spec("digits"), torch.device("cpu"))
    assert not other.live.warned
    other.load_state_dict(state)
    assert other.live.warned


def test_live_health_numbers():
    from rdskd_dist.engine.health import LiveHealth

    live = LiveHealth(num_classes=4)
    assert live.stats() is None
    logits = torch.full((8, 4), -10.0)
    logits[torch.arange(8), torch.arange(8) % 4] = 10.0  # balanced and confident
    live.observe(logits)
    values = live.stats().tolist()
    assert values[:4] == [0.25] * 4 and values[4] == pytest.approx(1.0, abs=1e-6)
    metrics = live.metrics(values, step=5)
    assert metrics["batch_health/effective_classes"] == pytest.approx(4.0) and not live.warned
    from rdskd_dist.tracking.names import progress_metrics

    assert progress_metrics(metrics) == metrics  # the MLflow progress path charts them under the same names
    assert live.stats() is None  # each report reads the batch once


def test_generator_from_an_engine_checkpoint_at_another_input_size_and_width(tmp_path):
    """MLflow's generator artifact rebuilt from an engine checkpoint follows the run's --image-size and width."""
    from rdskd_dist.tracking.artifacts import build_generator, generator_payload

    checkpoint = tmp_path / "engine.pt"
    options = dict(image_size=16, generator_width=0.5, checkpoint=checkpoint, checkpoint_every=1)
    _run(plain_teacher(), **options)
    payload = generator_payload(checkpoint, DistillConfig(**{**TINY, **options}).model_dump(mode="json"))
    assert payload["arch"]["image_size"] == 16 and payload["arch"]["width"] == 0.5
    generator = build_generator(payload)
    assert generator(torch.randn(2, generator.latent_dim)).shape == (2, 1, 16, 16)
