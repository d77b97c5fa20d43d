"""Each method lowers its own objective on a small real teacher; method-specific identities."""

import pytest
import torch

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec
from rdskd_dist.engine import Distiller
from rdskd_dist.errors import UserError
from rdskd_dist.methods import list_methods
from rdskd_dist.teachers import load_teacher


def make_engine(teacher_path, **overrides) -> Distiller:
    spec = get_spec("digits")
    teacher, _ = load_teacher(teacher_path, spec)
    cfg = DistillConfig(dataset="digits", batch_size=64, log_every=1000, eval_teacher=False, **overrides)
    return Distiller(cfg, teacher, spec, torch.device("cpu"))


def mean_metric(engine: Distiller, key: str) -> float:
    return engine.metrics.means()[key]


def test_registry_has_the_four_methods():
    assert list_methods() == ["dafl", "dfad", "dfad_ar_vi", "rdskd"]


@pytest.mark.parametrize("method", ["rdskd", "dafl"])
def test_generator_lowers_authenticity_and_diversity_terms(digits_teacher, method):
    plain = {"penalty": False} if method == "rdskd" else {}  # plain sum: comparable across steps
    engine = make_engine(digits_teacher, method=method, **plain)
    engine.generator_step()
    first = engine.metrics.means()
    engine.metrics.reset()
    for _ in range(20):
        engine.generator_step()
    engine.metrics.reset()
    for _ in range(3):
        engine.generator_step()
    assert mean_metric(engine, "g/total") < first["g/total"] - 0.05
    assert mean_metric(engine, "g/ie") <= first["g/ie"] + 1e-3  # class diversity does not collapse


@pytest.mark.parametrize("method", list_methods())
def test_student_lowers_its_loss_on_fixed_samples(digits_teacher, method):
    engine = make_engine(digits_teacher, method=method, lr_student=5e-3, student_optimizer="adam")
    x, teacher_out = engine.samples.fresh(generator_train_mode=False)

    def loss() -> float:
        with torch.no_grad():
            return engine.method.student_loss(x, teacher_out, engine.student)["total"].item()

    before = loss()
    for _ in range(30):
        engine.student_step(x, teacher_out)
    assert loss() < 0.7 * before


def test_dfad_generator_loss_is_the_negated_student_loss(digits_teacher):
    engine = make_engine(digits_teacher, method="dfad")
    x, teacher_out = engine.samples.fresh(generator_train_mode=True)
    with torch.no_grad():
        g = engine.method.generator_loss(x, teacher_out, engine.student, 0)["total"]
        s = engine.method.student_loss(x, teacher_out, engine.student)["total"]
    assert torch.allclose(g, -s)


def test_dfad_generator_raises_the_discrepancy(digits_teacher):
    engine = make_engine(digits_teacher, method="dfad", lr_generator=1e-2)
    for _ in range(15):
        engine.generator_step()  # student fixed: the generator alone maximises |T - S|
    engine.metrics.reset()
    engine.generator_step()
    late = mean_metric(engine, "g/adv")
    fresh = make_engine(digits_teacher, method="dfad", lr_generator=1e-2)
    fresh.generator_step()
    assert late > mean_metric(fresh, "g/adv")


def test_bn_term_needs_a_bn_teacher(digits_teacher):
    from rdskd_dist.errors import UserError

    with pytest.raises(UserError, match="BatchNorm"):
        make_engine(digits_teacher, method="rdskd", w_bn=1.0)


def test_bn_term_added_to_generator_loss_for_bn_teacher():
    from rdskd_dist.models import create_model
    from rdskd_dist.teachers import freeze

    spec = get_spec("cifar10")
    teacher = freeze(create_model("wrn16_1", num_classes=10, in_channels=3))
    cfg = DistillConfig(dataset="cifar10", method="dafl", student="wrn16_1", batch_size=8, latent_dim=16, w_bn=1.0)
    engine = Distiller(cfg, teacher, spec, torch.device("cpu"))
    engine.generator_step()
    assert engine.metrics.means()["g/bn"] > 0


@pytest.mark.parametrize("weight, term", [("w_tv", "tv"), ("w_range", "range")])
@pytest.mark.parametrize("method", list_methods())
def test_image_priors_reach_every_generator_loss(digits_teacher, method, weight, term):
    off = make_engine(digits_teacher, method=method)
    on = make_engine(digits_teacher, method=method, **{weight: 2.0})
    x, teacher_out = off.samples.fresh(generator_train_mode=True)
    with torch.no_grad():
        plain = off.method.generator_loss(x, teacher_out, off.student, 0)
        prior = on.method.generator_loss(x, teacher_out, off.student, 0)
    assert term not in plain and prior[term] > 0  # the output BN's unit-variance samples leave the pixel range
    assert torch.allclose(prior["total"], plain["total"] + 2.0 * prior[term], atol=1e-5)
    on.generator_step()
    assert on.metrics.means()[f"g/{term}"] > 0
    off.generator_step()
    assert f"g/{term}" not in off.metrics.means()  # off by default: the reference settings are unchanged


def test_pixel_range_follows_the_teachers_normalisation(digits_teacher):
    """The bounds are where raw pixels 0 and 1 land after the teacher's (mean, std), the dataset's or the user's."""
    spec = get_spec("digits")
    low, high = make_engine(digits_teacher, w_range=1.0).method.pixel_bounds
    assert torch.allclose(low.flatten(), torch.tensor([-spec.mean[0] / spec.std[0]]))
    assert torch.allclose(high.flatten(), torch.tensor([(1 - spec.mean[0]) / spec.std[0]]))
    low, high = make_engine(digits_teacher, w_range=1.0, teacher_mean=[0.5], teacher_std=[0.5]).method.pixel_bounds
    assert low.item() == -1.0 and high.item() == 1.0


def test_rdskd_weighs_the_activation_term_only_when_asked(digits_teacher):
    """RDSKD's reference has no activation term (w_a 0); w_a > 0 adds DAFL's, on the penultimate feature."""
    off = make_engine(digits_teacher, method="rdskd")
    on = make_engine(digits_teacher, method="rdskd", w_a=0.5)
    assert off.cfg.w_a == 0.0
    x, teacher_out = off.samples.fresh(generator_train_mode=True)
    with torch.no_grad():
        plain = off.method.generator_loss(x, teacher_out, off.student, 0)
        active = on.method.generator_loss(x, teacher_out, off.student, 0)
    assert "a" not in plain and active["a"] < 0  # minus the mean absolute activation
    assert torch.allclose(active["a"], -teacher_out.penultimate.float().abs().mean())
    assert torch.allclose(active["total"], plain["total"] + 0.5 * active["a"], atol=1e-5)


@pytest.mark.parametrize("method", ["rdskd", "dafl", "dfad"])
def test_the_feature_hint_adds_a_relative_feature_error_and_trains_its_connector(digits_teacher, method):
    """w_hint > 0: the student loss gains the connector's squared error against the teacher's late feature,
    relative to that feature's mean square; the connector trains with the student; off by default."""
    off = make_engine(digits_teacher, method=method)
    on = make_engine(digits_teacher, method=method, w_hint=0.5)
    assert off.method.student_modules() is None and off.cfg.w_hint == 0.0
    x, teacher_out = on.samples.fresh(generator_train_mode=False)
    assert teacher_out.preact is not None  # kept for the student although no augmentation relabels it
    on.student.load_state_dict(off.student.state_dict())
    with torch.no_grad():
        plain = off.method.student_loss(x, teacher_out, off.student)
        hinted = on.method.student_loss(x, teacher_out, on.student)
        student_feature = on.student(x, features=True).preact
        target = teacher_out.preact.float()
        expected = (on.method.hint(student_feature) - target).pow(2).mean() / target.pow(2).mean()
    assert "hint" not in plain
    assert torch.allclose(hinted["hint"], expected, rtol=1e-4)
    assert torch.allclose(hinted["total"], plain["total"] + 0.5 * hinted["hint"], rtol=1e-4)
    connector = [p.detach().clone() for p in on.method.hint.parameters()]
    for _ in range(30):
        on.student_step(x, teacher_out)
    assert any(not torch.equal(a, b) for a, b in zip(connector, on.method.hint.parameters()))
    with torch.no_grad():
        assert on.method.student_loss(x, teacher_out, on.student)["hint"] < 0.7 * hinted["hint"]


def test_the_feature_hint_is_refused_where_the_method_has_its_own_feature_term(digits_teacher):
    with pytest.raises(UserError, match="dfad_ar_vi compares student and teacher features"):
        make_engine(digits_teacher, method="dfad_ar_vi", w_hint=1.0)
