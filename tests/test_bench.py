"""The benchmark scripts run end to end on tiny shapes (their real runs are in docs/results)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mnist_quality_tiny(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "mnist_quality.py"), "--tiny", "--seeds", "0", "1", "--methods", "rdskd",
           "dfad", "--teacher", str(tmp_path / "t.pt"), "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "mnist_quality_tiny.json").read_text())
    order = ["rdskd", "dfad", "kd_real_data", "scratch_real_data"]  # seed-major: all methods on seed 0 first
    assert [(r["method"], r["seed"]) for r in data["runs"]] == [(m, s) for s in (0, 1) for m in order]
    assert data["complete"]
    accs = [r["student_accuracy"] for r in data["runs"] if r["method"] == "rdskd"]
    assert abs(data["summary"]["rdskd"]["mean"] - sum(accs) / 2) < 1e-9
    assert "| rdskd |" in (tmp_path / "mnist_quality_tiny.md").read_text()
    # --resume keeps finished runs: drop the last one and only it is run again
    data["runs"] = data["runs"][:-1]
    (tmp_path / "mnist_quality_tiny.json").write_text(json.dumps(data))
    proc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("result:") == 1 and "scratch_real_data seed=1" in proc.stdout
    assert json.loads((tmp_path / "mnist_quality_tiny.json").read_text())["complete"]


def test_cifar10_gpu_script_on_tiny_shapes(tmp_path):
    """The CIFAR-10 GPU benchmark end to end on generated CIFAR-binary files, tiny budgets, on the CPU."""
    import numpy as np

    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}.bin", 8) for i in range(1, 6)), ("test_batch.bin", 16)]:
        records = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cifar10_gpu.py"), "--tiny", "--data-root",
                           str(tmp_path / "cifar10"), "--teacher", str(tmp_path / "t.pt"), "--eval-every", "5",
                           "--methods", "rdskd", "dfad_ar_vi", "--device", "cpu", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "cifar10_gpu_tiny.json").read_text())
    assert [r["method"] for r in data["runs"]] == ["rdskd", "dfad_ar_vi"]
    for run in data["runs"]:
        assert [p["student_step"] for p in run["curve"]] == [5, 10]  # a point per eval interval, at the end too
        assert run["curve"][-1]["test_accuracy"] == run["student_accuracy"]  # the last point is the reported student
    assert "| dfad_ar_vi |" in (tmp_path / "cifar10_gpu_tiny.md").read_text()


def test_speedups_and_profile_scripts_on_tiny_shapes(tmp_path):
    common = ["--batch-size", "16", "--steps", "2", "--out-dir", str(tmp_path)]
    runs = [["speedups.py", "--tiny", "--repeats", "1", "--seeds", "0", "--pool", "2", "--teacher", str(tmp_path / "t.pt")],
            ["profile_loop.py", "--top", "5"]]
    for script, *args in runs:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, *common], capture_output=True,
                              text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
    speed = json.loads((tmp_path / "speedups.json").read_text())
    half = "auto + channels_last, generator width 0.5"
    assert set(speed["summary"]) == {"fp32", "fp32 + channels_last", "bf16", "bf16 + channels_last",
                                     "auto + channels_last", "auto + channels_last + pool", half, f"{half} + pool"}
    assert speed["hardware"]["cpu_capability"] and isinstance(speed["hardware"]["native_bf16"], bool)
    assert all(v["generator_step_s"] > 0 and v["student_step_s"] > 0 for v in speed["summary"].values())
    assert [len(a) for a in speed["accuracy"].values()] == [1, 1]
    prof = json.loads((tmp_path / "profile.json").read_text())
    for rows in prof["stages"].values():
        assert len(rows) == 5 and rows[0]["self_ms_per_step"] >= rows[-1]["self_ms_per_step"] > 0
    step = subprocess.run([sys.executable, str(ROOT / "bench" / "student_step.py"), "--config", "tiny", "--dataset",
                           "digits", "--steps", "3", "--repeats", "2"], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert step.returncode == 0, step.stderr[-2000:]
    timing = json.loads(step.stdout.strip().splitlines()[-1])
    assert timing["config"] == "tiny" and len(timing["rounds_ms"]) == 2 and timing["ms_per_student_step"] > 0


def test_mnist_fast_tiny_curve_and_plot(tmp_path, digits_teacher):
    cmd = [sys.executable, str(ROOT / "bench" / "mnist_fast.py"), "--configs", "tiny", "--seeds", "0", "--dataset",
           "digits", "--teacher", str(digits_teacher), "--monitor-every", "8", "--name", "fast", "--out-dir",
           str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads((tmp_path / "fast.json").read_text())["runs"][0]
    assert run["config"] == "tiny" and 0 <= run["student_accuracy"] <= 100
    assert run["curve"] and all(t <= run["train_time_s"] + 1e-6 for t, _, _ in run["curve"])  # monitoring only
    plot = subprocess.run([sys.executable, str(ROOT / "bench" / "plot_curves.py"), str(tmp_path / "fast.json"),
                           "--out", str(tmp_path / "c.png")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert plot.returncode == 0, plot.stderr[-2000:]
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_any_teacher_tiny(tmp_path):
    """bench/any_teacher.py's smallest path: a GroupNorm teacher of the bench's own, trained on digits, saved as a
    bare state_dict, loaded by factory name; the real-data KD reference and two data-free students with health."""
    cmd = [sys.executable, str(ROOT / "bench" / "any_teacher.py"), "--tiny", "--teacher-dir", str(tmp_path / "runs"),
           "--name", "tiny", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "tiny.json").read_text())
    assert data["teachers"]["gn_gap_cnn"]["arch"] == "own_teachers:gn_gap_cnn"
    assert [r["variant"] for r in data["runs"]] == ["kd_real_data", "rdskd", "dfad"]
    for run in data["runs"][1:]:
        assert {"effective_classes", "agreement", "collapsed"} <= set(run["health"])
        assert run["batch_health_trace"] and "batch_health/effective_classes" in run["batch_health_trace"][-1]
    assert all(r["sample_tv"] > 0 for r in data["runs"])  # the real images' and each generator's smoothness
    assert "| gn_gap_cnn (" in (tmp_path / "tiny.md").read_text()
    runs = tmp_path / "runs"
    assert (runs / "gn_gap_cnn.pt").exists() and (runs / "gn_gap_cnn_rdskd_s0" / "result.json").exists()
    # bench/sample_grid.py draws what those generators made, one block per run, teacher loaded by factory name
    grid = subprocess.run([sys.executable, str(ROOT / "bench" / "sample_grid.py"), str(runs / "gn_gap_cnn_rdskd_s0"),
                           str(runs / "gn_gap_cnn_dfad_s0"), "--out", str(tmp_path / "grid.png"), "--scale", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert grid.returncode == 0, grid.stderr[-2000:]
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as image:  # two blocks of 8 x 8 samples of 32 px, side by side
        assert image.size[0] > 2 * 8 * 32 and image.size[1] > 8 * 32
    # bench/student_confusion.py: the same student's per-class test accuracy, adding up to the run's own figure
    run = runs / "gn_gap_cnn_rdskd_s0"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "student_confusion.py"), str(run), "--out-dir",
                           str(tmp_path), "--name", "confusion"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads((tmp_path / "confusion.json").read_text())["runs"][run.name]
    expected = json.loads((run / "result.json").read_text())["student_accuracy"]
    assert len(found["student"]["per_class"]) == 10 and abs(found["student"]["accuracy"] - expected) < 0.05
    assert all(t != p for t, p, _ in found["student"]["confusions"])  # off-diagonal only


def test_every_named_bench_configuration_is_a_valid_config():
    """A typo or an unknown option in a named benchmark configuration fails here, not an hour into a run."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import any_teacher
        import mnist_fast
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from rdskd_dist.config import DistillConfig

    for name, options in mnist_fast.CONFIGS.items():
        assert DistillConfig(dataset="mnist", **options).method == options["method"], name
    for name, options in any_teacher.VARIANTS.items():
        cfg = DistillConfig(dataset="mnist", **{**any_teacher.SHARED, **options})
        # the shared student budget, unless a variant names its own (the rdskd_long* ones: 16,000 steps)
        assert cfg.student_steps == options.get("student_steps", any_teacher.STUDENT_STEPS), name
    assert {"dafl_fast_range", "dfad_fast_off_range", "rdskd_g800_range"} <= set(mnist_fast.CONFIGS)


def test_stage2_variants_continue_a_shared_stage_1_exactly(tmp_path, digits_teacher):
    """bench/stage2_variants.py: the control variant, continued from the cached stage 1, ends where the full run of
    the same configuration and seed ends (mnist_fast.py), and a second variant reuses the cache."""
    common = ["--seeds", "0", "--dataset", "digits", "--teacher", str(digits_teacher), "--monitor-every", "8",
              "--out-dir", str(tmp_path)]
    full = subprocess.run([sys.executable, str(ROOT / "bench" / "mnist_fast.py"), "--configs", "tiny", "--name", "full",
                           *common], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert full.returncode == 0, full.stderr[-2000:]
    staged = subprocess.run([sys.executable, str(ROOT / "bench" / "stage2_variants.py"), "--base", "tiny",
                             "--variants", "control", "t4", "--cache", str(tmp_path / "stage1"), "--name", "staged",
                             *common], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert staged.returncode == 0, staged.stderr[-2000:]
    expected = json.loads((tmp_path / "full.json").read_text())["runs"][0]["student_accuracy"]
    runs = json.loads((tmp_path / "staged.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == ["control", "t4"]
    assert runs[0]["student_accuracy"] == expected
    assert runs[0]["stage1_time_s"] == runs[1]["stage1_time_s"] > 0  # one stage 1, cached
    assert list((tmp_path / "stage1").iterdir()) == [tmp_path / "stage1" / "tiny_s0.pt"]


def test_seed_spread_pairs_points_across_sweeps(tmp_path):
    """Two seeds' trial tables on the same points: per-point differences and the seed std from them."""
    import pandas as pd

    def table(seed, accs, path):
        rows = [{"method": m, "point": p, "seed": seed, "status": "ok", "student_accuracy": a + (m == "dafl")}
                for p, a in enumerate(accs) for m in ("rdskd", "dafl")]
        pd.DataFrame(rows).to_parquet(path)
        return str(path)

    first = table(0, [97.0, 98.0, 96.0], tmp_path / "a.parquet")
    second = table(1, [97.5, 97.0], tmp_path / "b.parquet")  # point 2 not run for seed 1: left out
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "seed_spread.py"), first, second, "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "seed_spread.json").read_text())
    assert data["points"] == [0, 1] and data["accuracy"] == {"0": [97.0, 98.0], "1": [97.5, 97.0]}
    assert abs(data["seed_std"] - 0.75) < 1e-9  # std(-0.5, +1.0) = 1.06, / sqrt(2)
    assert data["seed_mean_min"] == 97.25 and abs(data["seed_mean_std_over_points"] - 0.1767766952966369) < 1e-9
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "seed_spread.py"), first, "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "need two seeds" in proc.stderr


def test_seed_spread_pairs_two_sweeps_of_one_design_by_point_and_seed(tmp_path):
    """Two settings (sweep folders) of the same points: per-pair differences, each one's spread, the correlation."""
    import pandas as pd

    def table(folder, accs):
        path = tmp_path / folder / "results.parquet"
        path.parent.mkdir()
        rows = [{"method": "rdskd", "point": p, "seed": 0, "status": "ok" if a else "error", "student_accuracy": a}
                for p, a in enumerate(accs)]
        pd.DataFrame(rows).to_parquet(path)
        return str(path)

    fast = table("fast", [96.0, 97.0, 98.0, 97.0])
    long = table("long", [97.0, 98.5, 98.5, None])  # point 3 failed in the long sweep: left out
    script = str(ROOT / "bench" / "seed_spread.py")
    proc = subprocess.run([sys.executable, script, fast, long, "--pair", "sweeps", "--out-dir", str(tmp_path),
                           "--name", "budgets"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "budgets.json").read_text())
    assert data["sweeps"] == ["fast", "long"] and data["pairs"] == [[0, 0], [1, 0], [2, 0]]
    assert abs(data["difference_mean"] - 1.0) < 1e-9  # +1.0, +1.5, +0.5
    assert data["stats"]["long"]["min"] == 97.0 and abs(data["stats"]["fast"]["std"] - 1.0) < 1e-9
    assert abs(data["correlation"] - 0.8660254037844387) < 1e-9
    proc = subprocess.run([sys.executable, script, fast, fast, "--pair", "sweeps", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "two differently named sweep folders" in proc.stderr


def test_ray_trial_startup_measures_each_variant(tmp_path):
    """Two real Tune trials on a fresh local Ray, each fitting the adapter's trainer as the sweep builds it."""
    cmd = [sys.executable, str(ROOT / "bench" / "ray_trial_startup.py"), "--variants", "lean_nopg_notorch", "--repeats", "1",
           "--busy-s", "1", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    startups = json.loads((tmp_path / "ray_trial_startup.json").read_text())["startup_s"]["lean_nopg_notorch"]
    assert len(startups) == 2 and all(0 < s < 300 for s in startups)


def test_health_vs_accuracy_ranks_health_numbers_against_test_accuracy(tmp_path):
    """Per method: Spearman's rho of each health number with accuracy; collapsed and failed trials accounted."""
    import pandas as pd

    folder = tmp_path / "sweep"
    folder.mkdir()
    accs = [96.0, 97.0, 98.0, 95.0, None]  # the last trial failed: left out
    rows = [{"method": "rdskd", "point": p, "status": "ok" if a else "error", "student_accuracy": a,
             "health_agreement": 80.0 + (a or 0), "health_effective_classes": 10.0 - (a or 0) / 100,
             "health_mean_confidence": [0.9, 0.2, 0.5, 0.7, 0.1][p], "health_top_class_fraction": 0.1,
             "health_collapsed": p == 3} for p, a in enumerate(accs)]
    pd.DataFrame(rows).to_parquet(folder / "results.parquet")
    script = str(ROOT / "bench" / "health_vs_accuracy.py")
    proc = subprocess.run([sys.executable, script, str(folder / "results.parquet"), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [group] = json.loads((tmp_path / "health_vs_accuracy.json").read_text())["groups"]
    assert (group["source"], group["group"], group["runs"]) == ("sweep", "rdskd", 4)
    assert group["collapsed"] == 1 and group["collapsed_mean_accuracy"] == 95.0
    assert group["spearman"]["agreement"] == 1.0 and group["spearman"]["effective_classes"] == -1.0
    assert group["spearman"]["mean_confidence"] == -0.6  # ranks 4,1,2,3 against 2,3,4,1: 1 - 6 * 16 / 60
    assert group["spearman"]["top_class_fraction"] is None  # constant: no ranking
    proc = subprocess.run([sys.executable, script, str(folder / "results.parquet"), "--min-runs", "5",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "no method or teacher has 5 runs" in proc.stderr
