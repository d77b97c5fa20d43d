"""bench/soak.py's bookkeeping (no sweep): process classes, per-trial attribution, growth figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
MIB = 2**20


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample(t: float, driver_mib: float, workers_mib: list[float]) -> dict:
    procs = [{"pid": 100 + i, "title": "ray::run_trial", "rss": int(m * MIB)} for i, m in enumerate(workers_mib)]
    procs.append({"pid": 99, "title": "/x/raylet --node_id=1", "rss": 50 * MIB})
    return {"t": t, "driver_rss": int(driver_mib * MIB), "procs": procs}


def test_process_classes(soak):
    assert soak.classify("ray::_Inner.train") == "worker"
    assert soak.classify("ray::IDLE") == "worker"
    assert soak.classify("ray::DashboardAgent") == "core"
    assert soak.classify("/venv/ray/core/src/ray/gcs/gcs_server --port 1") == "core"
    assert soak.classify("bash -c sleep") == "other"


def test_per_trial_peaks_come_from_the_trial_window(soak):
    samples = [sample(0, 100, [10]), sample(1, 120, [30, 5]), sample(2, 300, [70]), sample(3, 110, [20])]
    rows = [{"key": "b", "status": "ok", "started_at": 2, "finished_at": 3},
            {"key": "a", "status": "ok", "started_at": 0.5, "finished_at": 1.5}]
    trials = soak.per_trial(rows, samples)
    assert [t["key"] for t in trials] == ["a", "b"]  # in order of finishing
    assert trials[0]["driver_peak_mib"] == pytest.approx(120)
    assert trials[0]["worker_peak_mib"] == pytest.approx(30)
    assert trials[0]["workers_total_peak_mib"] == pytest.approx(35)  # the raylet is not a worker
    assert trials[1]["driver_peak_mib"] == pytest.approx(300)


def test_growth_slope_and_first_last_means(soak):
    flat = soak.growth([500.0] * 30)
    assert flat["slope_mib_per_trial"] == pytest.approx(0) and flat["last_minus_first_mib"] == pytest.approx(0)
    leaking = soak.growth([500.0 + 2 * i for i in range(30)])
    assert leaking["slope_mib_per_trial"] == pytest.approx(2)
    assert leaking["last_minus_first_mib"] == pytest.approx(40)  # means of 0..9 and 20..29 differ by 20 trials
    warm_up = soak.growth([500.0 + min(i, 10) * 10 for i in range(30)])  # grows, then levels off
    assert warm_up["slope_mib_per_trial"] > 0 and warm_up["second_half_slope_mib_per_trial"] == pytest.approx(0)
    assert soak.slope([1.0]) == 0.0


def test_summary_counts_live_workers(soak):
    samples = [sample(0, 100, []), sample(1, 100, [10, 10]), sample(2, 100, [10, 10, 10]), sample(3, 100, [])]
    rows = [{"key": "a", "status": "ok", "started_at": 0, "finished_at": 3}]
    summary = soak.summarize(soak.per_trial(rows, samples), samples)
    assert summary["live_workers_first_last"] == [2, 3] and summary["live_workers_max"] == 3
    assert summary["trials"] == summary["ok"] == 1
    assert "Tune driver" in soak.markdown({"summary": summary, "hardware": soak.hardware(), "command": "c",
                                           "sweep_command": "s", "date": "d", "exit_code": 0, "wall_s": 60,
                                           "interval_s": 0.5, "config": "cfg"})
