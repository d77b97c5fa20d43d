"""Bad input through the real CLIs: one clear line on stderr, a non-zero exit, no traceback, nothing written.

One table of cases for `python -m rdskd_dist.train`, `python -m rdskd_dist.tune` and
`python -m rdskd_dist.pull`: options, YAML files (errors carry file:line), teacher files, dataset
roots, output locations, MLflow tracking URIs and Ray cluster addresses. All cases run a few at a time in
one module fixture, each in its own process forked from one that has already imported torch and Ray
(`cli_forker.py`: a case is otherwise mostly interpreter and torch start-up), then every case checks
its own result.
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from rdskd_dist.models import create_model

PWNED = Path("/tmp/rdskd_pwned")
FORKER = Path(__file__).resolve().parent / "cli_forker.py"
PARALLEL = 3
CASE_TIMEOUT_S = 120
MAX_CPU_S = 20  # per case; most take 1-4 s, the NaN case trains a few steps


class PickledCode:
    """An object whose unpickling would run a shell command."""

    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """The bad files (and a valid, untrained teacher: no case gets as far as its accuracy) by name."""
    from rdskd_dist.teachers import save_teacher

    d = tmp_path_factory.mktemp("bad")
    teacher = d / "digits_lenet5.pt"
    torch.manual_seed(0)
    save_teacher(create_model("lenet5", num_classes=10, in_channels=1), teacher, dataset="digits", test_accuracy=10.0)
    files = {name: d / file for name, file in {
        "missing": "nope.pt", "truncated": "truncated.pt", "not_state_dict": "list.pt", "pickled_code": "evil.pt",
        "bare_lenet": "bare_lenet.pt", "cifar_teacher": "cifar.pt", "five_classes": "five_classes.pt",
        "bad_value_yaml": "bad_value.yaml", "bad_syntax_yaml": "bad_syntax.yaml", "unknown_key_yaml": "unknown.yaml",
        "bad_spec": "bad_spec.yaml", "bad_spec_syntax": "bad_spec_syntax.yaml", "empty_root": "empty",
        "file_root": "not_a_folder.txt", "good_spec": "good_spec.yaml"}.items()}
    files["truncated"].write_bytes(teacher.read_bytes()[:2000])
    torch.save([1, 2, 3], files["not_state_dict"])
    torch.save({"weights": PickledCode()}, files["pickled_code"])
    torch.save(create_model("lenet5").state_dict(), files["bare_lenet"])
    save_teacher(create_model("lenet5", num_classes=10, in_channels=3), files["cifar_teacher"], dataset="cifar10",
                 test_accuracy=10.0)
    save_teacher(create_model("lenet5", num_classes=5, in_channels=1), files["five_classes"], dataset="digits",
                 test_accuracy=10.0)
    files["bad_value_yaml"].write_text("dataset: digits\nmethod: rdskd\nbatch_size: -4\n")
    files["bad_syntax_yaml"].write_text("dataset: digits\nmethod: [rdskd\nbatch_size: 4\n")
    files["unknown_key_yaml"].write_text("dataset: digits\n\nbatch_sise: 4\n")
    spec = ("name: bad\nmode: robustness\nmethods: [rdskd]\nbase:\n  dataset: digits\n  teacher: {teacher}\n"
            "  generator_steps: 2\n  student_steps: 2\nspace:\n  w_oh: {{low: 0.5, high: 2}}\nnum_points: {points}\n"
            "seeds: [0]\n")
    files["bad_spec"].write_text(spec.format(teacher=teacher, points=0))
    files["good_spec"].write_text(spec.format(teacher=teacher, points=1))
    files["bad_spec_syntax"].write_text("name: bad\nmode: robustness\nbase: {dataset: digits\nseeds: [0]\n")
    files["empty_root"].mkdir()
    files["file_root"].write_text("not a dataset folder\n")
    # Unwritable even for root (chmod does not stop root): a folder below a regular file.
    files["unwritable"] = files["file_root"] / "out"
    return {**{k: str(v) for k, v in files.items()}, "teacher": str(teacher)}


@dataclass(frozen=True)
class Case:
    cli: str  # "train", "tune" or "pull"
    argv: Callable[[dict[str, str]], list[str]]  # from the inputs' paths
    error: str  # regex the one error line must match
    tracking: bool = False  # leave MLflow tracking on (the case is about it)


def port_uri() -> str:
    return f"http://127.0.0.1:{closed_port()}"


def port_address() -> str:
    return f"127.0.0.1:{closed_port()}"


CASES: dict[str, Case] = {
    # ---- options
    "unknown dataset": Case("train", lambda f: ["--dataset", "imagenet"], r"unknown dataset 'imagenet'; valid: cifar10, .*svhn"),
    "unknown model": Case("train", lambda f: ["--student", "resnet99"], r"unknown model 'resnet99'; valid: .*lenet5"),
    "unknown method": Case("train", lambda f: ["--method", "magic"], r"unknown method 'magic'; valid: dafl, dfad"),
    "non-positive batch": Case("train", lambda f: ["--batch-size", "0"], r"batch_size: Input should be greater than 0"),
    "non-positive lr": Case("train", lambda f: ["--lr-generator=-1e-3"], r"lr_generator: Input should be greater than 0"),
    "non-positive budget": Case("train", lambda f: ["--student-steps", "0"], r"student_steps: Input should be greater than 0"),
    "unknown cli option": Case("train", lambda f: ["--bogus", "1"], r"unrecognized arguments: --bogus"),
    "tune unknown method": Case("tune", lambda f: ["--spec", f["good_spec"], "--methods", "magic"], r"magic"),
    "nan loss": Case("train", lambda f: ["--method", "dafl", "--student-steps", "4", "--log-every", "2",
                                         "--lr-student", "1e30", "--batch-size", "16"],
                     r"loss term 's/total' became NaN or inf at step \d+"),
    # ---- YAML files: file and line
    "train yaml bad value": Case("train", lambda f: ["--config", f["bad_value_yaml"]], r"bad_value\.yaml:3: batch_size"),
    "train yaml syntax": Case("train", lambda f: ["--config", f["bad_syntax_yaml"]], r"bad_syntax\.yaml:\d+: invalid YAML"),
    "train yaml unknown key": Case("train", lambda f: ["--config", f["unknown_key_yaml"]],
                                   r"unknown\.yaml:3: batch_sise: unknown option"),
    "tune spec bad value": Case("tune", lambda f: ["--spec", f["bad_spec"]], r"bad_spec\.yaml:11: num_points"),
    "tune spec syntax": Case("tune", lambda f: ["--spec", f["bad_spec_syntax"]], r"bad_spec_syntax\.yaml:\d+: invalid YAML"),
    "tune spec missing": Case("tune", lambda f: ["--spec", f["missing"] + ".yaml"], r"spec file not found"),
    # ---- teacher files
    "teacher missing": Case("train", lambda f: ["--teacher", f["missing"]], r"teacher file not found: .*nope\.pt"),
    "teacher truncated": Case("train", lambda f: ["--teacher", f["truncated"]], r"not a valid torch checkpoint"),
    "teacher not a state_dict": Case("train", lambda f: ["--teacher", f["not_state_dict"], "--teacher-arch", "lenet5"],
                                     r"is not a state_dict"),
    "teacher with pickled code": Case("train", lambda f: ["--teacher", f["pickled_code"], "--teacher-arch", "lenet5"],
                                      r"refusing to load teacher .*pickled objects"),
    "teacher architecture mismatch": Case("train", lambda f: ["--teacher", f["bare_lenet"], "--teacher-arch", "wrn16_1"],
                                          r"does not match architecture wrn16_1"),
    "bare state_dict without arch": Case("train", lambda f: ["--teacher", f["bare_lenet"]], r"pass --teacher-arch"),
    "teacher of another dataset": Case("train", lambda f: ["--teacher", f["cifar_teacher"]],
                                       r"trained on cifar10, not digits"),
    "teacher wrong num_classes": Case("train", lambda f: ["--teacher", f["five_classes"]],
                                      r"num_classes=5 but dataset digits has 10"),
    "teacher sha256 mismatch": Case("train", lambda f: ["--teacher-sha256", "0" * 64], r"expected 0{64}; refusing"),
    # ---- dataset roots
    "dataset files missing": Case("train", lambda f: ["--dataset", "mnist", "--data-root", f["empty_root"]],
                                  r"mnist: missing t10k-images-idx3-ubyte\.gz .* in .*empty"),
    "dataset root is a file": Case("train", lambda f: ["--dataset", "mnist", "--data-root", f["file_root"]],
                                   r"not_a_folder\.txt"),
    # ---- output locations: checked before the teacher, the data or Ray (nothing is created)
    "output folder unwritable": Case("train", lambda f: ["--output", f["unwritable"]],
                                     r"^error: cannot write to output folder .*not_a_folder\.txt/out: Not a directory$"),
    "output folder is a file": Case("train", lambda f: ["--output", f["file_root"]],
                                    r"cannot write to output folder .*not_a_folder\.txt: it is a file, not a folder"),
    "checkpoint unwritable": Case("train", lambda f: ["--checkpoint", f["unwritable"] + "/ckpt.pt"],
                                  r"cannot write to checkpoint file .*not_a_folder\.txt/out/ckpt\.pt: Not a directory"),
    "checkpoint is a folder": Case("train", lambda f: ["--checkpoint", f["empty_root"]],
                                   r"cannot write to checkpoint file .*empty: it is a folder, not a file"),
    "ray storage unwritable": Case("train", lambda f: ["--workers", "1", "--storage", f["unwritable"]],
                                   r"cannot write to Ray storage folder .*not_a_folder\.txt/out: Not a directory"),
    "tune output unwritable": Case("tune", lambda f: ["--spec", f["good_spec"], "--output", f["unwritable"]],
                                   r"^error: cannot write to output folder .*not_a_folder\.txt/out/bad: Not a directory$"),
    "pull out unwritable": Case("pull", lambda f: ["models:/rdskd-digits-lenet5_half@champion", "--out", f["unwritable"]],
                                r"cannot write to output folder .*not_a_folder\.txt/out: Not a directory"),
    # ---- MLflow tracking URIs
    "mlflow unreachable": Case("train", lambda f: ["--tracking-uri", port_uri()],
                               r"MLflow tracking server http://127\.0\.0\.1:\d+ is unreachable \(connection refused\)",
                               tracking=True),
    "mlflow malformed scheme": Case("train", lambda f: ["--tracking-uri", "htp:/x"],
                                    r"malformed MLflow tracking URI 'htp:/x': has no '//' after its scheme 'htp'", tracking=True),
    "mlflow no host": Case("train", lambda f: ["--tracking-uri", "http://"], r"malformed tracking server URI 'http://': no host",
                           tracking=True),
    "tune mlflow unreachable": Case("tune", lambda f: ["--spec", f["good_spec"], "--tracking-uri", port_uri()],
                                    r"MLflow tracking server .* is unreachable", tracking=True),
    # pull only reads: a store that is not there is an error, never a new empty database (in the empty cwd)
    "pull sqlite store missing": Case("pull", lambda f: ["models:/rdskd-digits-lenet5_half@champion",
                                                         "--tracking-uri", "sqlite:///sub/mlflow.db"],
                                      r"MLflow tracking store sqlite:///sub/mlflow\.db does not exist \(no sqlite "
                                      r"database file .*/sub/mlflow\.db\)"),
    "pull bare db path missing": Case("pull", lambda f: ["models:/rdskd-digits-lenet5_half/1", "--tracking-uri",
                                                         "mlflow.db"],
                                      r"MLflow tracking store sqlite:///.*/mlflow\.db does not exist"),
    "pull default store missing": Case("pull", lambda f: ["models:/rdskd-digits-lenet5_half@champion"],
                                       r"MLflow tracking store sqlite:///.*/mlflow\.db does not exist"),
    "pull file store missing": Case("pull", lambda f: ["models:/rdskd-digits-lenet5_half@champion", "--tracking-uri",
                                                       "file://" + f["empty_root"] + "/mlruns"],
                                    r"MLflow tracking store file://.*/empty/mlruns does not exist"),
    # ---- Ray cluster addresses
    "train address unreachable": Case("train", lambda f: ["--workers", "1", "--address", port_address()],
                                      r"Ray cluster at 127\.0\.0\.1:\d+ is unreachable \(connection refused\)"),
    "train address malformed": Case("train", lambda f: ["--workers", "1", "--address", "htp:/x"],
                                    r"address: malformed Ray address 'htp:/x'"),
    "train address without workers": Case("train", lambda f: ["--address", "127.0.0.1:6379"],
                                          r"--address joins a Ray cluster for --workers N >= 1"),
    "tune address unreachable": Case("tune", lambda f: ["--spec", f["good_spec"], "--address", port_address()],
                                     r"Ray cluster at 127\.0\.0\.1:\d+ is unreachable"),
    "tune address malformed": Case("tune", lambda f: ["--spec", f["good_spec"], "--address", "http://"],
                                   r"Ray address 'http://' is a dashboard URL"),
}


def command(case: Case, files: dict[str, str], out: Path) -> list[str]:
    argv = case.argv(files)
    if case.cli == "train":
        argv = ["--output", str(out), "--student-steps", "2", "--generator-steps", "2", *argv]
        if "--teacher" not in argv:
            argv += ["--teacher", files["teacher"]]
        if not case.tracking:
            argv.append("--no-tracking")
    elif case.cli == "tune":
        argv = ["--output", str(out), "--no-plots", *argv]
        if not case.tracking:
            argv.append("--no-tracking")
    return [sys.executable, "-m", f"rdskd_dist.{case.cli}", *argv]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path
    wall_s: float
    cpu_s: float  # user + system of the process and its children: "fast" whatever else loads the machine


class ForkedCli:
    """One lane of `cli_forker.py`: a process with the imports done that forks a child per case (see there)."""

    def __init__(self, env: dict[str, str], scratch: Path):
        self.scratch = scratch
        self.proc = subprocess.Popen([sys.executable, str(FORKER)], env=env, cwd=scratch, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, cmd: list[str], cwd: Path) -> Outcome:
        assert cmd[:2] == [sys.executable, "-m"], cmd
        out, err = self.scratch / f"{cwd.name}.out", self.scratch / f"{cwd.name}.err"
        request = {"module": cmd[2], "argv": cmd[3:], "cwd": str(cwd), "stdout": str(out), "stderr": str(err),
                   "timeout_s": CASE_TIMEOUT_S}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, "the CLI forker died"
        done = json.loads(reply)
        return Outcome(done["returncode"], out.read_text(), err.read_text(), cwd, done["wall_s"], done["cpu_s"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory) -> dict[str, Outcome]:
    """Every case run once, PARALLEL at a time, each in its own empty working directory, each in its own process
    (forked from a lane that has done the imports: `cli_forker.py`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"

    lanes: queue.Queue[ForkedCli] = queue.Queue()
    for _ in range(PARALLEL):
        lanes.put(ForkedCli(env, tmp_path_factory.mktemp("lane")))

    def run(name: str) -> tuple[str, Outcome]:
        cwd = tmp_path_factory.mktemp("case")
        lane = lanes.get()
        try:
            return name, lane.run(command(CASES[name], inputs, cwd / "out"), cwd)
        finally:
            lanes.put(lane)

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            return dict(pool.map(run, CASES))
    finally:
        while not lanes.empty():
            lanes.get().close()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_with_one_clear_line(name, outcomes):
    proc = outcomes[name]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert re.search(CASES[name].error, lines[0]), lines[0]
    # nothing half-done: no output folder, no tracking store, nothing else in the working directory
    assert sorted(p.name for p in proc.cwd.iterdir()) == [], sorted(p.name for p in proc.cwd.iterdir())
    assert not PWNED.exists()


def test_cases_cover_every_kind_of_input_and_fail_fast(outcomes):
    assert len(CASES) >= 15
    assert {case.cli for case in CASES.values()} == {"train", "tune", "pull"}
    by_cpu = sorted(outcomes.items(), key=lambda kv: -kv[1].cpu_s)
    print("CPU s (wall s) per case: " + ", ".join(f"{n} {o.cpu_s:.1f} ({o.wall_s:.0f})" for n, o in by_cpu))
    slowest, outcome = by_cpu[0]
    assert outcome.cpu_s < MAX_CPU_S, f"{slowest} used {outcome.cpu_s:.1f} CPU seconds"


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
