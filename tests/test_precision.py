"""`precision auto`: bf16 autocast only where the training device computes bf16 natively."""

from __future__ import annotations

import json

import pytest
import torch

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import get_spec
from rdskd_dist.engine import Distiller, run_distillation
from rdskd_dist.engine import precision as precision_module
from rdskd_dist.engine.precision import native_bf16, resolve_precision
from rdskd_dist.teachers import load_teacher

CPU = torch.device("cpu")
TINY = dict(dataset="digits", method="rdskd", generator_steps=2, student_steps=2, batch_size=8, log_every=1,
            eval_teacher=False, device="cpu")


@pytest.mark.parametrize("avx512_bf16,amx,expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                      (False, True, "bf16")])
def test_auto_follows_the_cpus_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"  # asked: kept


def test_the_engine_computes_in_the_resolved_precision_and_notes_emulated_bf16(monkeypatch, digits_teacher, capsys):
    spec = get_spec("digits")
    teacher, _ = load_teacher(digits_teacher, spec)
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    engine = Distiller(DistillConfig(teacher=str(digits_teacher), precision="auto", **TINY), teacher, spec, CPU)
    assert engine.cfg.precision == "fp32" and "emulated" not in capsys.readouterr().err
    engine = Distiller(DistillConfig(teacher=str(digits_teacher), precision="bf16", **TINY), teacher, spec, CPU)
    assert engine.cfg.precision == "bf16"  # asked for explicitly: kept, with one note
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "emulated" in err and "--precision auto" in err
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: True)
    engine = Distiller(DistillConfig(teacher=str(digits_teacher), precision="auto", **TINY), teacher, spec, CPU)
    assert engine.cfg.precision == "bf16" and capsys.readouterr().err == ""


def test_a_run_records_the_precision_it_computed_in(tmp_path, digits_teacher):
    cfg = DistillConfig(teacher=str(digits_teacher), precision="auto", output=str(tmp_path / "run"), **TINY)
    result = run_distillation(cfg)
    used = "bf16" if native_bf16(CPU) else "fp32"
    assert result.precision == used
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["precision"] == saved["config"]["precision"] == used
