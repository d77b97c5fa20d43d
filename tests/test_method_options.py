"""Methods own their options and reference settings; one resolve step fills a config from them."""

from __future__ import annotations

import subprocess
import sys
from typing import Callable

import pytest
import torch
from pydantic import Field

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec
from rdskd_dist.engine import Distiller, describe_sources, resolve_config
from rdskd_dist.errors import UserError
from rdskd_dist.methods import Method, MethodOptions, list_methods, register_method
from rdskd_dist.methods import registry as method_registry
from rdskd_dist.methods.losses import kd_kl_loss, onehot_loss

# The reference settings, read off the reference code by hand (not from the method files).
_COMMON_FIELDS = ("schedule", "lr_generator", "student_optimizer", "lr_student", "weight_decay", "temperature",
                  "w_oh", "w_ie", "w_ds", "w_a", "generator_inner_bn_eps", "lr_decay_at", "generator_lr_decay_at")
REFERENCE = {
    ("rdskd", "mnist"): ("two_stage", 1e-3, "adam", 2e-3, 0.0, 10.0, 1.0, 1.0, 1.0, 0.0, 0.8, [], []),
    ("rdskd", "cifar10"): ("two_stage", 1e-3, "adam", 2e-3, 0.0, 10.0, 1.0, 1.0, 1.0, 0.0, 0.8, [0.8], []),
    ("dafl", "mnist"): ("joint", 0.2, "adam", 2e-3, 0.0, 1.0, 1.0, 5.0, 0.0, 0.1, 0.8, [], []),
    ("dafl", "cifar10"): ("joint", 0.02, "sgd", 0.1, 5e-4, 1.0, 0.05, 5.0, 0.0, 0.01, 0.8, [0.4, 0.8], []),
    ("dafl", "cifar100"): ("joint", 0.02, "sgd", 0.1, 5e-4, 1.0, 0.5, 20.0, 0.0, 0.1, 0.8, [0.4, 0.8], []),
    ("dfad", "mnist"): ("adversarial", 1e-3, "sgd", 0.01, 1e-4, 1.0, 0.0, 0.0, 0.0, 0.0, 1e-5, [], []),
    ("dfad", "cifar10"): ("adversarial", 1e-3, "sgd", 0.1, 5e-4, 1.0, 0.0, 0.0, 0.0, 0.0, 1e-5, [0.2, 0.4],
                          [0.2, 0.4]),
    ("dfad_ar_vi", "mnist"): ("adversarial", 1e-3, "sgd", 0.01, 1e-4, 1.0, 0.0, 0.0, 0.0, 0.0, 1e-5, [], []),
}


@pytest.mark.parametrize("method,dataset", list(REFERENCE))
def test_resolved_defaults_match_the_reference_code(method, dataset):
    resolved = resolve_config(DistillConfig(method=method, dataset=dataset), get_spec(dataset))
    assert tuple(getattr(resolved, f) for f in _COMMON_FIELDS) == REFERENCE[method, dataset]
    if method.startswith("dfad"):
        assert (resolved.momentum, resolved.student_steps_per_generator_step) == (0.9, 5)
    if method == "dfad" and dataset == "cifar10":
        assert resolved.latent_dim == 256  # DFAD's CIFAR latent, not the dataset's 1000


def test_method_options_defaults_and_digits_borrow_mnist_settings():
    rd = resolve_config(DistillConfig(method="rdskd"), get_spec("digits"))
    assert rd.method_options == {"penalty": True, "penalty_refresh": "epoch", "penalty_epoch": 120,
                                 "penalty_ema": 0.9}
    assert rd.lr_student == 2e-3 and rd.temperature == 10.0
    dafl = resolve_config(DistillConfig(method="dafl"), get_spec("digits"))
    assert dafl.method_options == {"entropy_log": "log10", "activation_feature": "trunk"}
    assert dafl.lr_generator == 0.2


def test_given_values_win_and_sources_say_where_each_value_came_from():
    cfg = DistillConfig(method="dfad", dataset="mnist", lr_student=0.05)
    rows = {name: (value, source) for name, value, source in
            describe_sources(cfg, get_spec("mnist"), {"lr_student": "command line"})}
    assert rows["lr_student"] == (0.05, "command line")
    assert rows["student_optimizer"] == ("sgd", "reference dfad/mnist")
    assert rows["student"] == ("lenet5_half", "dataset mnist")
    assert rows["batch_size"] == (512, "default")


def test_an_option_of_another_method_is_refused():
    with pytest.raises(ValueError, match="'ar_weight' belongs to dfad_ar_vi, not to method 'rdskd'"):
        DistillConfig(method="rdskd", ar_weight=2.0)
    with pytest.raises(ValueError, match="penalty_refresh"):
        DistillConfig(method="rdskd", penalty_refresh="weekly")


def test_print_config_on_the_cli_shows_sources(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("method: dafl\n\nentropy_log: ln\n")
    out = subprocess.run([sys.executable, "-m", "rdskd_dist.train", "--config", str(spec), "--dataset", "mnist",
                          "--print-config"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split(None, 2)[1:] for line in out.stdout.splitlines() if not line.startswith("#")}
    assert lines["entropy_log"] == ["ln", f"{spec}:3"]
    assert lines["dataset"] == ["mnist", "command line"]
    assert lines["lr_generator"] == ["0.2", "reference dafl/mnist"]
    assert lines["activation_feature"] == ["trunk", "dafl default"]
    assert not list(tmp_path.glob("*.db"))  # printed and exited: nothing ran


class ToyOptions(MethodOptions):
    toy_weight: float = Field(1.0, gt=0, description="toy: weight of the one-hot term")


class Toy(Method):
    """A throwaway method: one file's worth of declarations, registered from this test."""

    name = "toy"
    Options = ToyOptions
    references = {"*": dict(schedule="two_stage", lr_student=0.0123, temperature=3.0)}
    sweepable = {"toy_weight": False}

    def generator_loss(self, x, teacher_out, student: Callable, g_step: int):
        oh = onehot_loss(teacher_out.logits)
        return {"total": self.options.toy_weight * oh, "oh": oh}

    def student_loss(self, x, teacher_out, student: Callable):
        return {"total": kd_kl_loss(student(x), teacher_out.logits, self.cfg.temperature)}


@pytest.fixture
def toy_method():
    register_method(Toy)
    try:
        yield Toy
    finally:
        method_registry._METHODS.pop("toy")


def test_a_new_method_is_picked_up_everywhere_without_other_edits(toy_method, digits_teacher):
    from rdskd_dist.cli import parse_config
    from rdskd_dist.train import TrainJobConfig
    from rdskd_dist.tune.design import apply_design
    from rdskd_dist.tune.spec import Dim, SweepSpec, sweepable_options

    assert "toy" in list_methods()
    job = parse_config(TrainJobConfig, ["--method", "toy", "--toy-weight", "2.5"], "t", "t")
    assert job.distill_config().method_options == {"toy_weight": 2.5}
    resolved = resolve_config(DistillConfig(method="toy", dataset="digits"), get_spec("digits"))
    assert (resolved.lr_student, resolved.temperature, resolved.method_options) == (0.0123, 3.0, {"toy_weight": 1.0})
    assert sweepable_options()["toy_weight"] is False
    spec = SweepSpec(name="s", methods=["toy", "rdskd"], base={"teacher": str(digits_teacher)},
                     space={"toy_weight": Dim(low=0.1, high=10)})
    base = spec.base
    assert apply_design(base, "toy", spec.space, {"toy_weight": 2.0}) == {"toy_weight": 2.0}
    assert apply_design(base, "rdskd", spec.space, {"toy_weight": 2.0}) == {}  # not rdskd's option
    from rdskd_dist.teachers import load_teacher

    teacher, _ = load_teacher(digits_teacher, get_spec("digits"))
    engine = Distiller(DistillConfig(method="toy", generator_steps=2, student_steps=2, batch_size=8, log_every=2),
                       teacher, get_spec("digits"), torch.device("cpu"))
    engine.run()
    assert engine.g_step == 2 and engine.s_step == 2 and engine.method.options.toy_weight == 1.0


def test_generator_inner_bn_eps_reaches_only_the_two_inner_batch_norms():
    from rdskd_dist.models import create_model

    g = create_model("dafl_generator", inner_bn_eps=0.8)
    eps = [m.eps for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert eps == [1e-5, 0.8, 0.8, 1e-5]


def test_dafl_activation_term_uses_the_trunk_feature_by_default(digits_teacher):
    from rdskd_dist.teachers import load_teacher

    teacher, _ = load_teacher(digits_teacher, get_spec("digits"))
    out = teacher(torch.randn(4, 1, 32, 32), features=True)
    assert out.trunk.shape == (4, 120) and out.penultimate.shape == (4, 84)
    with pytest.raises(UserError, match="penultimate"):
        from rdskd_dist.models.base import LogitsOnly

        # any module gets the input of its last nn.Linear as `penultimate`; one without a Linear has none
        plain = LogitsOnly(torch.nn.Sequential(torch.nn.Conv2d(1, 10, 32), torch.nn.Flatten()))
        Distiller(DistillConfig(method="dafl", batch_size=4, student_steps=1), plain, get_spec("digits"),
                  torch.device("cpu")).generator_step()
