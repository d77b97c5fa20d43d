"""The benchmark scripts run end to end on tiny shapes (their real runs are in docs/results)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mnist_quality_tiny(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "mnist_quality.py"), "--tiny", "--seeds", "0", "1",
                           "--methods", "rdskd", "dfad", "--teacher", str(tmp_path / "t.pt"), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "mnist_quality_tiny.json").read_text())
    assert [(r["method"], r["seed"]) for r in data["runs"]] == [("rdskd", 0), ("rdskd", 1), ("dfad", 0), ("dfad", 1)]
    accs = [r["student_accuracy"] for r in data["runs"] if r["method"] == "rdskd"]
    assert abs(data["summary"]["rdskd"]["mean"] - sum(accs) / 2) < 1e-9
    assert set(data["references"]) == {"kd_real_data", "scratch_real_data", "real_epochs"}
    assert "| rdskd |" in (tmp_path / "mnist_quality_tiny.md").read_text()
