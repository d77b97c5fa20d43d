"""Bad input through the real CLI: one clear line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rdskd_dist.models import create_model


class PickledCode:
    """An object whose unpickling would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/rdskd_pwned",))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, digits_teacher) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {"missing": d / "nope.pt", "truncated": d / "truncated.pt", "not_state_dict": d / "list.pt",
             "pickled_code": d / "evil.pt", "bare_lenet": d / "bare_lenet.pt", "cifar_teacher": d / "cifar.pt",
             "nan_yaml": d / "nan.yaml", "bad_yaml": d / "bad.yaml", "empty_root": d / "empty"}
    files["truncated"].write_bytes(digits_teacher.read_bytes()[:2000])
    torch.save([1, 2, 3], files["not_state_dict"])
    torch.save({"weights": PickledCode()}, files["pickled_code"])
    torch.save(create_model("lenet5").state_dict(), files["bare_lenet"])
    from rdskd_dist.teachers import save_teacher

    save_teacher(create_model("lenet5", num_classes=10, in_channels=3), files["cifar_teacher"], dataset="cifar10",
                 test_accuracy=10.0)
    files["bad_yaml"].write_text("dataset: digits\nmethod: rdskd\nbatch_size: -4\n")
    files["empty_root"].mkdir()
    return files


CASES = {
    # name: (argv builder, regex the one error line must match)
    "unknown dataset": (lambda f, t: ["--dataset", "imagenet"], r"unknown dataset 'imagenet'; valid: cifar10, .*svhn"),
    "unknown model": (lambda f, t: ["--student", "resnet99"], r"unknown model 'resnet99'; valid: lenet5"),
    "unknown method": (lambda f, t: ["--method", "magic"], r"unknown method 'magic'; valid: dafl, dfad"),
    "missing data files": (lambda f, t: ["--dataset", "mnist", "--data-root", str(f["empty_root"]), "--teacher", str(t)],
                           r"mnist: missing t10k-images-idx3-ubyte.gz .* in .*empty"),
    "teacher missing": (lambda f, t: ["--teacher", str(f["missing"])], r"teacher file not found: .*nope.pt"),
    "teacher truncated": (lambda f, t: ["--teacher", str(f["truncated"])], r"not a valid torch checkpoint"),
    "teacher not a state_dict": (lambda f, t: ["--teacher", str(f["not_state_dict"]), "--teacher-arch", "lenet5"],
                                 r"is not a state_dict"),
    "teacher with pickled code": (lambda f, t: ["--teacher", str(f["pickled_code"]), "--teacher-arch", "lenet5"],
                                  r"refusing to load teacher .*pickled objects"),
    "architecture mismatch": (lambda f, t: ["--teacher", str(f["bare_lenet"]), "--teacher-arch", "wrn16_1"],
                              r"does not match architecture wrn16_1"),
    "bare state_dict without arch": (lambda f, t: ["--teacher", str(f["bare_lenet"])], r"pass --teacher-arch"),
    "channel mismatch": (lambda f, t: ["--teacher", str(f["cifar_teacher"])], r"trained on cifar10, not digits"),
    "sha256 mismatch": (lambda f, t: ["--teacher", str(t), "--teacher-sha256", "0" * 64], r"expected 0{64}; refusing"),
    "non-positive batch": (lambda f, t: ["--batch-size", "0"], r"batch_size: Input should be greater than 0"),
    "non-positive lr": (lambda f, t: ["--lr-generator=-1e-3"], r"lr_generator: Input should be greater than 0"),
    "non-positive budget": (lambda f, t: ["--student-steps", "0"], r"student_steps: Input should be greater than 0"),
    "yaml error with line": (lambda f, t: ["--config", str(f["bad_yaml"])], r"bad.yaml:3: batch_size"),
    "unknown cli option": (lambda f, t: ["--bogus", "1"], r"unrecognized arguments: --bogus"),
    "nan loss": (lambda f, t: ["--teacher", str(t), "--method", "dafl", "--student-steps", "4", "--log-every", "2",
                               "--lr-student", "1e30", "--batch-size", "16"],
                 r"loss term 's/total' became NaN or inf at step \d+"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_with_one_clear_line(case, bad_files, digits_teacher, tmp_path):
    build, pattern = CASES[case]
    out = tmp_path / "out"
    argv = ["--output", str(out), "--student-steps", "2", "--generator-steps", "2", *build(bad_files, digits_teacher)]
    if "--teacher" not in argv:
        argv += ["--teacher", str(digits_teacher)]
    proc = subprocess.run([sys.executable, "-m", "rdskd_dist.train", *argv], capture_output=True, text=True,
                          timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr

    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists()  # nothing half-written
    assert not Path("/tmp/rdskd_pwned").exists()


def test_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "rdskd_dist.train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    from rdskd_dist.config import DistillConfig

    for name in DistillConfig.model_fields:
        assert "--" + name.replace("_", "-") in proc.stdout


def test_yaml_and_cli_share_the_config(tmp_path):
    from rdskd_dist.cli import parse_config
    from rdskd_dist.config import DistillConfig

    spec = tmp_path / "run.yaml"
    spec.write_text("method: dafl\nbatch_size: 64\nlr_decay_at: [0.5, 0.8]\n")
    cfg = parse_config(DistillConfig, ["--config", str(spec), "--batch-size", "32"], "train", "")
    assert (cfg.method, cfg.batch_size, cfg.lr_decay_at) == ("dafl", 32, [0.5, 0.8])
