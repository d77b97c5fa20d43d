"""rdskd_dist.tune: spec, Sobol design and pairing, summary statistics, and real sweeps on a local Ray.

The sweeps use the digits demo with tiny budgets (2 generator steps, 4 student steps, batch 16):
the numbers are meaningless, the machinery is what is tested.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from rdskd_dist.engine.precision import resolve_precision
from rdskd_dist.errors import UserError
from rdskd_dist.tune.design import apply_design, reference_values, robustness_design, sobol_unit, trial_config
from rdskd_dist.tune.plots import accuracy_vs_options, importances
from rdskd_dist.tune.report import describe, markdown, summarize
from rdskd_dist.tune.spec import Dim, load_spec

REPO = Path(__file__).resolve().parents[1]
TINY_BASE = {"dataset": "digits", "generator_steps": 2, "student_steps": 4, "batch_size": 16, "log_every": 2,
             "eval_batch_size": 512}


@pytest.fixture(scope="module")
def random_teacher(tmp_path_factory) -> Path:
    """An untrained LeNet-5 saved as a teacher checkpoint: the sweep tests need a teacher, not a good one."""
    from rdskd_dist.models import create_model
    from rdskd_dist.teachers import save_teacher

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tune-teacher") / "teacher.pt"
    save_teacher(create_model("lenet5", num_classes=10, in_channels=1, image_size=32), path, dataset="digits",
                 test_accuracy=10.0)
    return path


def tiny_spec(tmp_path: Path, name: str, teacher: Path | None, **extra) -> dict:
    data = {"name": name, "methods": ["rdskd", "dafl"], "base": dict(TINY_BASE),
            "space": {"w_oh": {"low": 0.1, "high": 10}, "w_ie": {"low": 0.1, "high": 10}},
            "num_points": 3, "seeds": [0], "max_concurrent": 2, "trial": {"workers": 0},
            "output": str(tmp_path / "sweeps")}
    if teacher is not None:
        data["base"]["teacher"] = str(teacher)
    data.update(extra)
    return data


def write_spec(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# ---------------------------------------------------------------- spec


SPEC_ERRORS = [  # (spec file text, the one-line error it must give)
    ("name: bad\nmethods: [rdskd]\nbase:\n  teacher: t.pt\n  generator_stepz: 3\n",
     r"bad.yaml:5: base.generator_stepz: unknown option"),
    ("name: bad\nmethods: [rdskd, nope]\nbase: {teacher: t.pt}\n", r"bad.yaml:2: methods: unknown method 'nope'"),
    ("name: bad\nmethods: [rdskd]\nbase: {teacher: t.pt, method: dafl}\n", r"base.method is set per trial"),
    ("name: bad\nmethods: [rdskd]\nbase: {teacher: t.pt}\nmethod_base: {dafl: {student_steps: 3}}\n",
     r"method_base.dafl: not one of the sweep's methods"),
    ("name: bad\nmethods: [rdskd]\nbase: {teacher: t.pt}\nmethod_base: {rdskd: {batch_size: 0}}\n",
     r"method_base.rdskd.batch_size: Input should be greater than 0"),
    ("name: bad\nmethods: [rdskd]\nbase: {dataset: digits}\n", r"no teacher"),
    ("name: bad\nmethods: [rdskd, dfad]\nbase: {teacher: t.pt, student_steps: 4}\n",
     r"dfad trials: adversarial schedule: student_steps \(4\) must be a multiple of"),
    ("name: bad\nmethods: [rdskd]\nbase: {teacher: t.pt}\nspace:\n  w_oh: {low: 0, high: 1}\n",
     r"bad.yaml:5: space.w_oh: .*log-scale range needs low > 0"),
]


@pytest.mark.parametrize("text,message", SPEC_ERRORS)
def test_spec_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_spec(path)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "tune").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_spec_loads_and_plans(path, tmp_path):
    """The specs in tune/ are what users submit: each one validates and gives the paired design it says."""
    spec = load_spec(path)
    assert spec.methods and spec.num_points >= 1 and spec.space
    # the engine's image priors are the same for every method of a sweep, so they cannot tilt the comparison
    priors = {m: tuple(getattr(spec.base_for(m), k) for k in ("w_bn", "w_tv", "w_range")) for m in spec.methods}
    assert len(set(priors.values())) == 1, priors
    if spec.mode != "robustness":
        return
    plans = robustness_design(spec)
    assert len(plans) == spec.num_points * len(spec.seeds) * len(spec.methods)
    for plan in plans[:len(spec.methods)]:  # each method resolves its options at the first point
        cfg, columns = trial_config(spec.base, plan.method, plan.seed, spec.space, plan.x)
        assert cfg.method == plan.method and all(f"mult_{k}" in columns for k in spec.space)
        # every swept value reaches the trial, method-owned options (ar_weight, vi_weight) included
        for name, value in apply_design(spec.base, plan.method, spec.space, plan.x).items():
            assert columns[name] == pytest.approx(value), (plan.method, name)
    # the report's per-option views look up every method's reference of every swept option, including
    # options that only another method owns (ar_weight is DFAD+AR+VI's alone)
    row = {"key": plans[0].key, "method": plans[0].method, "status": "ok", spec.objective.name: 90.0,
           **{f"mult_{k}": v for k, v in plans[0].x.items()}}
    assert accuracy_vs_options([row], spec, tmp_path / "options.png").exists()
    assert isinstance(importances([row], spec), dict)


def test_a_partial_sweep_grows_on_resume_with_more_points_seeds_or_methods(tmp_path, random_teacher):
    """A robustness sweep run in part (a few points on a small machine) continues on --resume with more
    points or seeds: the short design is a prefix of the long one, so finished trials keep their keys and
    values. Fewer points, or any other change, is still another sweep."""
    from rdskd_dist.tune.sweep import prepare_folder

    small = load_spec(None, data=tiny_spec(tmp_path, "grow", random_teacher, num_points=2, seeds=[0]))
    big = load_spec(None, data=tiny_spec(tmp_path, "grow", random_teacher, num_points=5, seeds=[0, 1]))
    short, long = robustness_design(small), robustness_design(big)
    assert {p.key: p.x for p in short}.items() <= {p.key: p.x for p in long}.items()
    prepare_folder(small, resume=False)
    prepare_folder(big, resume=True)
    assert load_spec(big.sweep_dir / "spec.yaml").num_points == 5  # the folder now holds the grown sweep
    with pytest.raises(UserError, match="holds a different sweep"):  # without --resume: another sweep
        prepare_folder(small, resume=False)
    with pytest.raises(UserError, match=r"differs in: num_points"):  # shrinking would orphan finished trials
        prepare_folder(small, resume=True)
    moved = load_spec(None, data=tiny_spec(tmp_path, "grow", random_teacher, num_points=6, seeds=[0, 1],
                                           design_seed=3))
    with pytest.raises(UserError, match=r"differs in: design_seed"):
        prepare_folder(moved, resume=True)
    # one more method (with its own budget): the finished trials of the others keep their keys and values
    more = load_spec(None, data=tiny_spec(tmp_path, "grow", random_teacher, num_points=5, seeds=[0, 1],
                                          methods=["rdskd", "dafl", "dfad"], method_base={"dfad": {"student_steps": 5}}))
    assert {p.key: p.x for p in long}.items() <= {p.key: p.x for p in robustness_design(more)}.items()
    prepare_folder(more, resume=True)
    with pytest.raises(UserError, match=r"differs in: .*methods"):  # dropping a method would orphan its trials
        prepare_folder(big, resume=True)


def test_methods_on_the_command_line_narrow_the_specs_method_base(tmp_path):
    """`--methods` runs a subset of a spec's methods: the file's settings for the others are dropped, not
    an error; in the file itself a method_base entry for a method it does not run stays an error (a typo)."""
    path = write_spec(tmp_path, tiny_spec(tmp_path, "narrow", Path("/t.pt"), methods=["rdskd", "dafl", "dfad"],
                                          method_base={"dafl": {"student_steps": 6}, "dfad": {"student_steps": 5}}))
    spec = load_spec(path, {"methods": ["rdskd", "dfad"]})
    assert spec.methods == ["rdskd", "dfad"] and set(spec.method_base) == {"dfad"}
    with pytest.raises(UserError, match=r"method_base.dfad: not one of the sweep's methods"):
        load_spec(None, data=tiny_spec(tmp_path, "narrow", Path("/t.pt"), method_base={"dfad": {"student_steps": 5}}))


def test_trials_with_the_same_config_run_once(tmp_path):
    """DFAD has none of the swept loss weights: its trial at every point of a seed is the same run. The
    design runs it once per seed and repeats the row at the other points, under their own keys and
    design values; the methods the space does change get a trial per point."""
    from rdskd_dist.tune.design import shared_row, shared_trials
    from rdskd_dist.tune.modes import mode_of
    from rdskd_dist.tune.sweep import prepare_folder

    spec = load_spec(None, data=tiny_spec(tmp_path, "same", Path("/t.pt"), methods=["rdskd", "dfad"], seeds=[0, 1],
                                          method_base={"dfad": {"student_steps": 5}}))
    design = robustness_design(spec)
    shared = shared_trials(spec, design)
    assert shared == {f"dfad-p{p:03d}-s{s}": f"dfad-p000-s{s}" for p in (1, 2) for s in (0, 1)}
    folder = prepare_folder(spec, resume=False)
    source = {"key": "dfad-p000-s0", "method": "dfad", "point": 0, "seed": 0, "status": "ok",
              "student_accuracy": 91.5, "train_s": 3.0, "trial_wall_s": 5.0, "mult_w_oh": design[1].x["w_oh"]}
    folder.record(source)
    runs = mode_of(spec).plan(spec, folder, folder.rows(), folder.finished_keys(), float("inf"))
    planned = {p.key for run in runs for p in run.plans}
    assert planned == {p.key for p in design} - set(shared) - {"dfad-p000-s0"}  # rdskd x 6, dfad seed 1 once
    rows = {r["key"]: r for r in folder.rows()}
    for point in (1, 2):  # seed 0's repeats are recorded at once: their source finished
        row, plan = rows[f"dfad-p{point:03d}-s0"], next(p for p in design if p.key == f"dfad-p{point:03d}-s0")
        assert row["same_as"] == "dfad-p000-s0" and row["student_accuracy"] == 91.5 and row["point"] == point
        assert row["mult_w_oh"] == plan.x["w_oh"] != source["mult_w_oh"] and row.get("train_s") is None
    assert "dfad-p001-s1" not in rows  # seed 1's source has not run
    assert mode_of(spec).shared(spec)["dfad-p000-s1"] == [p for p in design if shared.get(p.key) == "dfad-p000-s1"]
    assert shared_row(source, design[0], spec)["key"] == design[0].key


def test_spec_overrides_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, tiny_spec(tmp_path, "ov", None, teacher_train={"epochs": 1},
                                          base={**TINY_BASE, "data_root": "data"}))
    spec = load_spec(path, {"max_concurrent": 3, "trial.workers": 1}, {"generator_steps": 7})
    assert spec.max_concurrent == 3 and spec.trial.workers == 1 and spec.base.generator_steps == 7
    assert spec.base.data_root == tmp_path / "data" and spec.output.is_absolute()
    # a command-line error is reported without a file:line
    with pytest.raises(UserError, match=r"^invalid sweep spec: base.batch_size: "):
        load_spec(path, base_overrides={"batch_size": 0})
    # the shipped specs are valid
    for shipped in sorted((REPO / "tune").glob("*.yaml")):
        assert load_spec(shipped).methods


def test_cli_reports_bad_options_in_one_line(capsys):
    from rdskd_dist.tune.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--spec", "no-such-spec.yaml"])
    assert exc.value.code == 2 and "spec file not found" in capsys.readouterr().err


# ---------------------------------------------------------------- design


def test_sobol_design_is_deterministic_bounded_and_paired(tmp_path):
    a, b, c = sobol_unit(16, 4, 0), sobol_unit(16, 4, 0), sobol_unit(16, 4, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (16, 4) and (a >= 0).all() and (a < 1).all()
    # a Sobol design of 2^k points fills every 1/16 stratum of each axis exactly once
    assert all(sorted(np.floor(a[:, j] * 16).astype(int)) == list(range(16)) for j in range(4))

    spec = load_spec(None, data=tiny_spec(tmp_path, "d", Path("/t.pt"), num_points=8, seeds=[0, 5],
                                          methods=["rdskd", "dafl", "dfad"], method_base={"dfad": {"student_steps": 5}},
                                          space={"w_oh": {"low": 0.1, "high": 10},
                                                 "batch_size": {"choices": [0.5, 1, 2]},
                                                 "lr_student": {"low": 1e-4, "high": 1e-2, "relative": False}}))
    plans = robustness_design(spec)
    assert len(plans) == 8 * 2 * 3 and len({p.key for p in plans}) == len(plans)
    assert plans == robustness_design(spec)  # deterministic
    by_unit: dict = {}
    for p in plans:
        by_unit.setdefault((p.point, p.seed), []).append(p)
    for (point, seed), group in by_unit.items():
        assert sorted(p.method for p in group) == ["dafl", "dfad", "rdskd"]
        assert all(p.x == group[0].x for p in group)  # the same design values for every method
    xs = [p.x for p in plans]
    assert all(0.1 <= x["w_oh"] <= 10 and x["batch_size"] in (0.5, 1, 2) and 1e-4 <= x["lr_student"] <= 1e-2
               for x in xs)

    # relative values multiply each method's own reference; absolute ones are used as they are
    x = {"w_oh": 2.0, "batch_size": 0.5, "lr_student": 3e-3}
    rd, da = apply_design(spec.base, "rdskd", spec.space, x), apply_design(spec.base, "dafl", spec.space, x)
    assert rd["w_oh"] == 2.0 * reference_values(spec.base, "rdskd")["w_oh"]
    assert rd["batch_size"] == 8 and rd["lr_student"] == da["lr_student"] == 3e-3
    spec_ie = load_spec(None, data=tiny_spec(tmp_path, "d2", Path("/t.pt"), space={"w_ie": {"low": 0.1, "high": 10}}))
    assert apply_design(spec_ie.base, "dafl", spec_ie.space, {"w_ie": 3.0})["w_ie"] == 15.0  # DAFL's MNIST w_ie is 5
    cfg, columns = trial_config(spec_ie.base, "dafl", 7, spec_ie.space, {"w_ie": 3.0})
    assert cfg.seed == 7 and cfg.w_ie == 15.0 and columns["w_a"] == 0.1 and columns["mult_w_ie"] == 3.0


def test_dim_mapping():
    d = Dim(low=0.1, high=10)
    assert d.value(0.0) == pytest.approx(0.1) and d.value(0.5) == pytest.approx(1.0)
    assert Dim(low=2, high=4, log=False).value(0.25) == 2.5
    assert [Dim(choices=[1, 2, 3]).value(u) for u in (0.0, 0.34, 0.99)] == [1, 2, 3]


# ---------------------------------------------------------------- summary


def _row(method, point, acc, status="ok", seed=0):
    return {"key": f"{method}-p{point:03d}-s{seed}", "method": method, "point": point, "seed": seed,
            "status": status, "student_accuracy": acc if status == "ok" else None, "error": None}


def test_summary_statistics_and_failures_are_not_scored():
    rows = [_row("rdskd", i, a) for i, a in enumerate([90.0, 91.0, 85.0, 90.5])]
    rows += [_row("dafl", 0, 80.0), _row("dafl", 1, 92.0), _row("dafl", 2, None, "failed"), _row("dafl", 3, 91.5)]
    rows += [_row("dfad", 0, None, "failed")]
    s = summarize(rows, ["rdskd", "dafl", "dfad"], "rdskd")
    r, d, f = s["methods"]["rdskd"], s["methods"]["dafl"], s["methods"]["dfad"]
    v = np.array([90.0, 91.0, 85.0, 90.5])
    assert r["mean"] == pytest.approx(v.mean()) and r["std"] == pytest.approx(v.std(ddof=1))
    assert r["p10"] == pytest.approx(np.percentile(v, 10)) and r["within_1pt"] == pytest.approx(3 / 4)
    assert r["paired"] is None
    assert (d["ok"], d["failed"]) == (3, 1) and d["mean"] == pytest.approx(np.mean([80, 92, 91.5]))
    diffs = np.array([80 - 90, 92 - 91, 91.5 - 90.5])  # point 2 failed for dafl: not a pair
    assert d["paired"]["pairs"] == 3 and d["paired"]["mean"] == pytest.approx(diffs.mean())
    assert d["paired"]["std"] == pytest.approx(diffs.std(ddof=1))
    assert (d["paired"]["min"], d["paired"]["max"]) == (pytest.approx(-10), pytest.approx(1))
    # the spreads on exactly the paired units (rdskd's point 2 has no dafl partner)
    assert d["paired"]["reference_on_pairs"]["std"] == pytest.approx(np.std([90.0, 91.0, 90.5], ddof=1))
    assert d["paired"]["method_on_pairs"]["min"] == pytest.approx(80.0)
    assert "dafl 87.83 +- 6.79 (min 80.00) against rdskd 90.50 +- 0.50 (min 90.00) on the same 3 point-seed pairs: " \
           "dafl's spread is larger" in markdown(s)
    # a method whose points all repeat one trial (no swept option reaches it) has a spread of 0 that says nothing
    copies = rows[:4] + [{**_row("dfad", i, 88.0), "same_as": None if i == 0 else "dfad-p000-s0"} for i in range(4)]
    assert "3 of 4 of dfad's rows repeat another trial's result" in markdown(summarize(copies, ["rdskd", "dfad"], "rdskd"))
    assert (f["ok"], f["failed"], f["mean"], f["paired"]["pairs"]) == (0, 1, None, 0)
    assert {x["key"] for x in s["not_scored"]} == {"dafl-p002-s0", "dfad-p000-s0"}
    assert "dafl-p002-s0 (failed)" in markdown(s)
    assert describe([]) ["mean"] is None and describe([5.0])["std"] == 0.0


def test_sensitivity_says_which_swept_option_moves_the_score():
    """The score rises with w_oh and not with w_ie (shuffled against it); an option the method does not use, or too
    few trials, gets no line."""
    oh = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 8.0, 10.0, 0.3]
    ie = [5.0, 0.1, 2.0, 0.3, 8.0, 1.0, 0.2, 3.0, 0.5]
    rows = [{**_row("rdskd", i, 97.0 + 0.1 * i if i < 8 else 97.15), "mult_w_oh": oh[i], "mult_w_ie": ie[i],
             "mult_w_a": oh[i]} for i in range(9)]
    rows += [{**_row("dafl", i, 90.0), "mult_w_oh": oh[i]} for i in range(4)]
    s = summarize(rows, ["rdskd", "dafl"], "rdskd",
                  swept={"rdskd": {"w_oh": "mult_w_oh", "w_ie": "mult_w_ie"}, "dafl": {"w_oh": "mult_w_oh"}})
    sens = s["methods"]["rdskd"]["sensitivity"]
    assert set(sens) == {"w_oh", "w_ie"} and sens["w_oh"]["spearman"] == pytest.approx(1.0)
    assert abs(sens["w_ie"]["spearman"]) < 0.5 and sens["w_oh"]["trials"] == 9
    # thirds by w_oh: 0.1/0.2/0.3 -> 97.0, 97.1, 97.15; 5/8/10 -> 97.5, 97.6, 97.7
    assert sens["w_oh"]["low_third_mean"] == pytest.approx((97.0 + 97.1 + 97.15) / 3)
    assert sens["w_oh"]["high_third_mean"] == pytest.approx(97.6)
    assert s["methods"]["dafl"]["sensitivity"] == {}  # 4 trials: too few
    md = markdown(s)
    assert "## What moves the score" in md and "- rdskd (9 trials): w_oh rho +1.00 (97.08 at <= 0.3, 97.60 at >= 5)" in md
    assert "## What moves the score" not in markdown(summarize(rows, ["rdskd"], "rdskd"))  # no swept options given


def test_health_and_score_from_the_spec():
    """Health columns reach the table; a `min` score ranks, pairs and picks the best the other way round."""
    from rdskd_dist.tune.score import Objective

    rows = [{**_row("rdskd", 0, 90.0), "health_effective_classes": 9.0, "health_agreement": 80.0,
             "health_collapsed": False},
            {**_row("rdskd", 1, 70.0), "health_effective_classes": 3.0, "health_agreement": 60.0,
             "health_collapsed": True}]
    s = summarize(rows, ["rdskd"], "rdskd")
    assert s["methods"]["rdskd"]["health"] == {"effective_classes": 6.0, "agreement": 70.0, "collapsed": 1,
                                               "generator_only": 0, "student": 0}
    assert "| rdskd | 2 | 0 |" in markdown(s) and "| 6.0 | 70.0 | 1 |" in markdown(s)
    # the student drew from a bank that kept every class: the final generator's collapse is counted apart
    banked = [{**rows[0], "health_stored_collapsed": False}, {**rows[1], "health_stored_collapsed": False},
              {**_row("rdskd", 2, 60.0), "health_collapsed": False, "health_stored_collapsed": True}]
    h = summarize(banked, ["rdskd"], "rdskd")["methods"]["rdskd"]["health"]
    assert (h["collapsed"], h["generator_only"]) == (1, 1)
    assert "| 1 (+1 final gen.) |" in markdown(summarize(banked, ["rdskd"], "rdskd"))
    # a student whose own predictions collapsed where the teacher's labels did not: counted on its own
    dead = banked + [{**_row("rdskd", 3, 10.0), "health_collapsed": False, "health_student_collapsed": True},
                     {**_row("rdskd", 4, 10.0), "health_collapsed": True, "health_student_collapsed": True}]
    h = summarize(dead, ["rdskd"], "rdskd")["methods"]["rdskd"]["health"]
    assert (h["collapsed"], h["generator_only"], h["student"]) == (2, 1, 1)
    assert "| 2 (+1 final gen.) (1 student did not learn) |" in markdown(summarize(dead, ["rdskd"], "rdskd"))
    assert "(student_accuracy, higher is better: each trial's value in its final result" in markdown(s)
    low = summarize(rows, ["rdskd"], "rdskd", objective=Objective(mode="min"))
    assert "(student_accuracy, lower is better" in markdown(low)
    assert low["methods"]["rdskd"]["best"]["key"] == "rdskd-p001-s0" and low["score"]["mode"] == "min"
    with pytest.raises(ValueError, match="not a trial result"):
        Objective(metric="nope")
    agree = Objective(metric="health_agreement")
    assert agree.best(rows)["key"] == "rdskd-p000-s0" and agree.format(80.0) == "80.00%"


def test_row_schema_follows_the_result_health_and_options():
    import dataclasses

    from rdskd_dist.engine.health import SCALAR_KEYS
    from rdskd_dist.engine.result import DistillResult
    from rdskd_dist.tune.rows import checked_row, columns, parquet_schema
    from rdskd_dist.tune.space import sweepable_options

    names = columns(["w_oh"])
    scalar = [f.name for f in dataclasses.fields(DistillResult) if f.name not in ("method", "health")]
    assert set(scalar) <= set(names) and {f"health_{k}" for k in SCALAR_KEYS} <= set(names)
    assert set(sweepable_options()) <= set(names) and "mult_w_oh" in names
    assert parquet_schema(["w_oh"]).names == list(names)
    assert checked_row({"status": "ok", "point": 2.0, "health_collapsed": 1.0}) == \
        {"status": "ok", "point": 2, "health_collapsed": True}
    with pytest.raises(ValueError):
        checked_row({"status": "done"})


def test_trial_context_builds_each_trials_config(tmp_path):
    from rdskd_dist.tune.context import TrialContext

    spec = load_spec(None, data=tiny_spec(tmp_path, "ctx", Path("/t.pt"), method_base={"dafl": {"student_steps": 6}}))
    ctx = TrialContext(spec, "a1", str(tmp_path / "train"), method="dafl")
    plan = ctx.plan({"x": {"w_oh": 2, "w_ie": 1}}, "t0")
    assert (plan.key, plan.method, plan.point, plan.seed) == ("dafl-t0", "dafl", None, 0)
    cfg, columns = ctx.trial_config(plan)
    assert cfg.student_steps == 6 and cfg.eval_teacher is False and columns["mult_w_oh"] == 2.0
    assert cfg.output == spec.sweep_dir / "trials" / "dafl-t0"
    assert ctx.first_columns(plan, "t0")["attempt"] == "a1"


def test_progress_line_counts_the_refilled_slot():
    """The line printed when a trial finishes counts the pending trial Tune starts in the freed slot."""
    from rich.console import Console

    from rdskd_dist.tune.progress import ProgressLine

    console = Console(file=__import__("io").StringIO(), width=200, force_terminal=False)
    progress = ProgressLine("qs", 4, console=console, slots=2, to_run=4)
    progress.trial_started(), progress.trial_started()
    ok = {"status": "ok", "student_accuracy": 90.0}
    lines = []
    for key in ("a", "b", "c", "d"):
        progress.trial_finished({**ok, "key": key})
        lines.append(console.file.getvalue().splitlines()[-1])
        if key in ("a", "b"):
            progress.trial_started()  # Tune refills the slot
    assert [line.split(" · ")[1] for line in lines] == ["2 running", "2 running", "1 running", "0 running"]


def test_timing_columns_split_a_trial():
    from rdskd_dist.tune.callback import add_launch_time
    from rdskd_dist.tune.report import timing_summary
    from rdskd_dist.tune.trainable import timing_columns

    marks = {"timing_worker_start_at": 105.0, "timing_setup_done_at": 106.0, "timing_train_done_at": 116.0,
             "timing_eval_done_at": 116.5}
    row = {"started_at": 100.0, **timing_columns(100.0, marks, 118.0)}
    assert (row["startup_s"], row["setup_s"], row["train_s"], row["eval_s"], row["finish_s"]) == (5, 1, 10, 0.5, 1.5)
    assert row["trial_wall_s"] == 18 and row["overhead_frac"] == pytest.approx(1 - 10 / 18, abs=1e-4)
    add_launch_time(row, 98.0)
    assert row["launch_s"] == 2 and row["overhead_frac"] == pytest.approx(0.5)
    assert "train 10.0s" in timing_summary([row]) and "50% outside training" in timing_summary([row])
    inproc = timing_columns(0.0, {"train_time_s": 6.0}, 8.0)  # workers: 0
    assert (inproc["train_s"], inproc["startup_s"], inproc["setup_s"]) == (6.0, 2.0, None)


# ---------------------------------------------------------------- real sweeps


def _check_summary_against_parquet(rows: list[dict], summary: dict, methods: list[str], reference: str) -> None:
    ref = {(r["point"], r["seed"]): r["student_accuracy"] for r in rows if r["method"] == reference and r["status"] == "ok"}
    for m in methods:
        acc = np.array([r["student_accuracy"] for r in rows if r["method"] == m and r["status"] == "ok"])
        s = summary["methods"][m]
        assert s["ok"] == len(acc)
        assert s["failed"] == sum(r["method"] == m and r["status"] == "failed" for r in rows)
        assert s["mean"] == pytest.approx(acc.mean()) and s["min"] == pytest.approx(acc.min())
        assert s["max"] == pytest.approx(acc.max()) and s["p10"] == pytest.approx(np.percentile(acc, 10))
        assert s["std"] == pytest.approx(acc.std(ddof=1) if len(acc) > 1 else 0.0)
        assert s["within_1pt"] == pytest.approx(np.mean(acc >= acc.max() - 1.0))
        if m != reference:
            d = np.array([r["student_accuracy"] - ref[(r["point"], r["seed"])] for r in rows
                          if r["method"] == m and r["status"] == "ok" and (r["point"], r["seed"]) in ref])
            assert s["paired"]["pairs"] == len(d) and s["paired"]["mean"] == pytest.approx(d.mean())
            assert s["paired"]["min"] == pytest.approx(d.min()) and s["paired"]["max"] == pytest.approx(d.max())


def test_robustness_sweep_rows_pairing_and_summary(tmp_path, local_ray):
    """2 methods x 3 Sobol points, the teacher trained once into the sweep folder (teacher_train)."""
    from rdskd_dist.tune.sweep import run_sweep

    spec = load_spec(None, data=tiny_spec(tmp_path, "robust", None, teacher_train={"epochs": 1, "batch_size": 256},
                                          method_base={"dafl": {"student_steps": 6}},
                                          base={**TINY_BASE, "precision": "auto"}))
    start = time.perf_counter()
    outcome = run_sweep(spec, plots=True)
    print(f"robustness sweep: {time.perf_counter() - start:.1f}s")
    folder = outcome.folder
    assert outcome.complete and (folder.path / "teacher.pt").is_file()
    rows = read_rows(folder.parquet)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert sorted((r["method"], r["point"]) for r in rows) == sorted((m, p) for m in ("rdskd", "dafl") for p in range(3))
    for r in rows:
        assert 0.0 <= r["student_accuracy"] <= 100.0 and r["error"] is None and r["wall_time_s"] > 0
        budget = 6 if r["method"] == "dafl" else 4  # method_base: DAFL's own budget
        assert r["generator_steps"] > 0 and r["student_steps"] == budget and r["budget_student_steps"] == budget
        assert Path(r["result_path"], "student.pt").is_file()
        cfg = json.loads(r["config_json"])
        assert cfg["method"] == r["method"] and cfg["seed"] == r["seed"] == 0
        # the row says what the trial computed in: `auto` resolved where it trained
        assert cfg["precision"] == "auto" and r["precision"] == resolve_precision("auto", torch.device("cpu"))
    # pairing: every point has the same design values and seed for both methods ...
    for p in range(3):
        a, b = [next(r for r in rows if r["method"] == m and r["point"] == p) for m in ("rdskd", "dafl")]
        assert (a["mult_w_oh"], a["mult_w_ie"], a["seed"]) == (b["mult_w_oh"], b["mult_w_ie"], b["seed"])
        # ... applied to each method's own reference weights (RDSKD 1/1, DAFL 1/5 on digits)
        assert a["w_oh"] == pytest.approx(a["mult_w_oh"]) and a["w_ie"] == pytest.approx(a["mult_w_ie"])
        assert b["w_ie"] == pytest.approx(5 * b["mult_w_ie"]) and b["w_a"] == pytest.approx(0.1)
    assert len({r["mult_w_oh"] for r in rows}) == 3  # three distinct points
    for r in rows:  # where each trial's time went; the teacher is evaluated once, when it is trained
        assert r["train_s"] > 0 and r["trial_wall_s"] >= r["train_s"] and 0 <= r["overhead_frac"] < 1
        assert r["launch_s"] >= 0 and r["teacher_accuracy"] == rows[0]["teacher_accuracy"] is not None
        assert json.loads(r["config_json"])["eval_teacher"] is False
    summary = json.loads((folder.path / "summary.json").read_text())
    assert summary == outcome.summary
    _check_summary_against_parquet(rows, summary, ["rdskd", "dafl"], "rdskd")
    assert "| dafl | 3 | 0 |" in (folder.path / "summary.md").read_text()
    assert {p.name for p in outcome.plots} >= {"accuracy_by_method.png", "accuracy_vs_options.png"}
    # running it again without --resume refuses to touch the finished sweep
    with pytest.raises(UserError, match="pass --resume"):
        run_sweep(spec)


def test_resume_runs_only_unfinished_trials(tmp_path, local_ray, random_teacher):
    """A sweep stopped after 2 of 4 trials (--max-trials) is completed by --resume without rerunning them."""
    from rdskd_dist.tune.sweep import run_sweep

    spec = load_spec(None, data=tiny_spec(tmp_path, "resume", random_teacher, num_points=2))
    first = run_sweep(spec, max_trials=2, plots=False)
    assert not first.complete and len(first.rows) == 2
    before = {r["key"]: r for r in first.rows}
    ledger_times = {k: (first.folder.ledger_dir / f"{k}.json").stat().st_mtime_ns for k in before}

    second = run_sweep(spec, resume=True, plots=False)
    assert second.complete and len(second.rows) == 4
    after = {r["key"]: r for r in second.rows}
    for key, row in before.items():  # finished trials kept as they were: same Tune trial, attempt, start time
        assert {k: after[key][k] for k in ("trial_id", "attempt", "started_at")} == \
               {k: row[k] for k in ("trial_id", "attempt", "started_at")}
        assert (second.folder.ledger_dir / f"{key}.json").stat().st_mtime_ns == ledger_times[key]
    new = [r for k, r in after.items() if k not in before]
    assert len(new) == 2 and {r["attempt"] for r in new}.isdisjoint({r["attempt"] for r in before.values()})
    assert min(r["started_at"] for r in new) > max(r["finished_at"] for r in before.values())
    assert len(read_rows(second.folder.parquet)) == 4
    # resuming a finished sweep starts nothing and reports it again
    third = run_sweep(spec, resume=True, plots=False)
    assert {r["key"]: r["started_at"] for r in third.rows} == {k: r["started_at"] for k, r in after.items()}


def test_a_sweep_grown_by_a_method_without_swept_options_runs_it_once(tmp_path, local_ray, random_teacher, capsys):
    """RDSKD on 3 points, then --resume with DFAD added: the RDSKD trials are kept, DFAD (no swept loss weight)
    runs one trial and its row is repeated at the other two points, paired with RDSKD's there."""
    from rdskd_dist.tune.sweep import run_sweep

    first = run_sweep(load_spec(None, data=tiny_spec(tmp_path, "grown", random_teacher, methods=["rdskd"])), plots=False)
    assert first.complete and len(first.rows) == 3
    spec = load_spec(None, data=tiny_spec(tmp_path, "grown", random_teacher, methods=["rdskd", "dfad"],
                                          method_base={"dfad": {"student_steps": 5}}))
    second = run_sweep(spec, resume=True, plots=False)
    assert second.complete
    rows = {r["key"]: r for r in read_rows(second.folder.parquet)}
    assert len(rows) == 6 and {r["status"] for r in rows.values()} == {"ok"}
    for old in first.rows:  # not run again
        assert rows[old["key"]]["started_at"] == old["started_at"]
    ran = rows["dfad-p000-s0"]
    assert ran["same_as"] is None and ran["train_s"] > 0
    for point in (1, 2):
        row, rdskd = rows[f"dfad-p{point:03d}-s0"], rows[f"rdskd-p{point:03d}-s0"]
        assert row["same_as"] == "dfad-p000-s0" and row["student_accuracy"] == ran["student_accuracy"]
        assert row["mult_w_oh"] == rdskd["mult_w_oh"] and row["train_s"] is None
    assert second.summary["methods"]["dfad"]["paired"]["pairs"] == 3
    assert "dfad: 2 of 3 rows repeat another trial's result" in capsys.readouterr().out


def test_failed_trial_is_a_failed_row_never_scored(tmp_path, local_ray, random_teacher, capsys, monkeypatch):
    """NaN injected through a command-line override (--lr-generator 1e30); the design brings one point back to a
    sane 1e-3. Trials run as Ray Train TorchTrainers (one worker each), the failure crosses that boundary."""
    from rdskd_dist.tune.__main__ import main

    monkeypatch.chdir(tmp_path)
    data = tiny_spec(tmp_path, "fail", random_teacher, methods=["rdskd"], num_points=2,
                     space={"lr_generator": {"choices": [1.0e-33, 1.0]}})
    path = write_spec(tmp_path, data)
    start = time.perf_counter()
    code = main(["--spec", str(path), "--lr-generator", "1e30", "--trial-workers", "1", "--cpus-per-worker", "0.99",
                 "--no-plots", "--no-tracking"])
    print(f"failure sweep: {time.perf_counter() - start:.1f}s")
    out = capsys.readouterr().out
    assert code == 0
    rows = read_rows(tmp_path / "sweeps" / "fail" / "results.parquet")
    assert len(rows) == 2
    failed = [r for r in rows if r["status"] == "failed"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(failed) == 1 and len(ok) == 1
    assert failed[0]["lr_generator"] == pytest.approx(1e30) and ok[0]["lr_generator"] == pytest.approx(1e-3)
    assert failed[0]["student_accuracy"] is None
    assert "NonFiniteLossError" in failed[0]["error"] and "NaN or inf" in failed[0]["error"]
    assert ok[0]["world_size"] == 1 and ok[0]["checkpoint_path"] and Path(ok[0]["result_path"], "student.pt").is_file()
    summary = json.loads((tmp_path / "sweeps" / "fail" / "summary.json").read_text())
    s = summary["methods"]["rdskd"]
    assert (s["ok"], s["failed"]) == (1, 1) and s["mean"] == pytest.approx(ok[0]["student_accuracy"])
    assert summary["not_scored"][0]["key"] == failed[0]["key"]
    assert f"not scored: {failed[0]['key']} (failed): NonFiniteLossError" in out
    assert "failed" in (tmp_path / "sweeps" / "fail" / "summary.md").read_text()


def test_ctrl_c_then_resume(tmp_path, local_ray, random_teacher):
    """Ctrl-C (SIGINT) to a running `python -m rdskd_dist.tune` after its first finished trial; --resume then
    completes the sweep without running the finished trials again."""
    data = tiny_spec(tmp_path, "interrupt", random_teacher, num_points=2, max_concurrent=1,
                     base={**TINY_BASE, "teacher": str(random_teacher), "student_steps": 40, "log_every": 10})
    path = write_spec(tmp_path, data)
    ledger = tmp_path / "sweeps" / "interrupt" / "ledger"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rdskd_dist.tune", "--spec", str(path), "--no-plots", "--no-tracking"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not list(ledger.glob("*.json")):
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = {json.loads(p.read_text())["key"]: json.loads(p.read_text()) for p in ledger.glob("*.json")}
    assert 1 <= len(finished) < 4, out
    assert "sweep incomplete" in out and proc.returncode == 1, out

    from rdskd_dist.tune.sweep import run_sweep

    outcome = run_sweep(load_spec(path), resume=True, plots=False)
    assert outcome.complete and len(outcome.rows) == 4
    after = {r["key"]: r for r in outcome.rows}
    for key, row in finished.items():
        assert (after[key]["trial_id"], after[key]["started_at"]) == (row["trial_id"], row["started_at"])
    assert len({r["attempt"] for r in outcome.rows}) == 2


def test_teacher_train_follows_the_sweeps_input_size(tmp_path):
    """A sweep at --image-size trains its teacher at that size (the image size is the sweep's, not the block's)."""
    from rich.console import Console

    from rdskd_dist.tune.sweep import SweepFolder, ensure_teacher

    spec = load_spec(None, data=tiny_spec(tmp_path, "s16", None, teacher_train={"epochs": 1},
                                          base={**TINY_BASE, "image_size": 16}))
    with pytest.raises(UserError, match="image_size"):
        load_spec(None, data=tiny_spec(tmp_path, "bad", None, teacher_train={"epochs": 1, "image_size": 16}))
    folder = SweepFolder(spec.sweep_dir)
    folder.path.mkdir(parents=True)
    spec = ensure_teacher(spec, folder, Console(quiet=True))
    saved = torch.load(spec.base.teacher, weights_only=True)
    assert saved["arch"]["image_size"] == 16 and saved["state_dict"]["conv3.weight"].shape[-1] == 4
