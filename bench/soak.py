"""Soak test: a long sweep of short trials, watching the memory of the Tune driver and of Ray's workers.

    python bench/soak.py --cluster           # 50 trials: rdskd + dafl x 25 Sobol points, G10/S20 on digits
    python bench/soak.py --points 5 --out /tmp/soak-smoke --no-write-docs   # a local Ray of the driver's own

Runs `python -m rdskd_dist.tune` as a subprocess (the Tune driver) and samples with psutil, every
`--interval` seconds from a background thread, the RSS of the driver and of the Ray processes:
with `--cluster`, those of a cluster of its own started by cluster/local-cluster.sh (own state
folder and ports, head + one worker node, stopped at the end), else the local Ray below the
driver. Ray's core processes (gcs_server, raylet, agents, dashboard) and its workers (`ray::...`
process titles: trial actors, Train controllers and workers) are told apart by title. Each
finished trial (its ledger row has `started_at` / `finished_at`) gets the peak driver RSS and the
peak RSS of any single worker process and of all workers together within its time window.

Growth check: the least-squares slope of the per-trial driver peak over the trial index (MiB per
trial) and the mean of the first 10 against the last 10 trials, the same for the workers' total,
and the count of live worker processes at the start and the end (leaked actors would pile up).
Writes docs/results/soak.json and soak.md (unless --no-write-docs) plus the raw samples into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import psutil

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results"
MIB = 2**20
CORE_TITLES = ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "log_monitor", "monitor.py",
               "dashboard.py")

SPEC = """\
name: soak
mode: robustness
methods: [rdskd, dafl]
reference_method: rdskd
base:
  dataset: digits
  generator_steps: {generator_steps}
  student_steps: {student_steps}
  batch_size: {batch_size}
  log_every: 10
  eval_batch_size: 512
  precision: auto
  channels_last: true
teacher_train: {{epochs: 12, lr: 0.003}}
space:
  w_oh: {{low: 0.1, high: 10}}
  w_ie: {{low: 0.1, high: 10}}
num_points: {points}
seeds: [0]
design_seed: 0
max_concurrent: 2
trial:
  workers: {trial_workers}
  cpus_per_worker: {cpus_per_worker}
output: {output}
"""


# ---------------------------------------------------------------- sampling

def classify(title: str) -> str:
    """'core' (Ray's own services), 'worker' (a `ray::` worker process) or 'other' (e.g. a shell)."""
    if any(t in title for t in CORE_TITLES):
        return "core"
    return "worker" if title.startswith("ray::") else "other"


def process_title(proc) -> str:
    try:
        cmdline = proc.cmdline()
        return (cmdline[0] if cmdline and cmdline[0].startswith("ray::") else " ".join(cmdline[:3])) or proc.name()
    except Exception:  # noqa: BLE001 - exited or not ours to read
        return ""


class Sampler(threading.Thread):
    """Samples the RSS of `root_pid`, of its descendants and of the processes `extra_pids()` names (a
    cluster's, looked up every `refresh_s`) every `interval` s until stopped."""

    def __init__(self, root_pid: int, interval: float, extra_pids: Callable[[], list[int]] = list,
                 refresh_s: float = 5.0):
        super().__init__(name="soak-sampler", daemon=True)
        self.psutil = psutil
        self.root, self.interval = self.psutil.Process(root_pid), interval
        self.extra_pids, self.refresh_s = extra_pids, refresh_s
        self._extra: list = []
        self._extra_at = 0.0
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def cluster_processes(self) -> list:
        if time.time() - self._extra_at > self.refresh_s:  # the lookup walks /proc: not every sample
            self._extra, self._extra_at = [], time.time()
            for pid in self.extra_pids():
                try:
                    self._extra.append(self.psutil.Process(pid))
                except self.psutil.Error:
                    continue
        return self._extra

    def sample(self) -> Optional[dict[str, Any]]:
        try:
            driver_rss = self.root.memory_info().rss
            children = self.root.children(recursive=True)
        except self.psutil.Error:
            return None
        seen = {c.pid for c in children}
        children += [p for p in self.cluster_processes() if p.pid not in seen and p.pid != self.root.pid]
        procs = []
        for child in children:
            try:
                procs.append({"pid": child.pid, "title": process_title(child)[:80], "rss": child.memory_info().rss})
            except self.psutil.Error:
                continue
        return {"t": time.time(), "driver_rss": driver_rss, "procs": procs}

    def run(self) -> None:
        while not self._halt.is_set():
            record = self.sample()
            if record is not None:
                self.samples.append(record)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


# ---------------------------------------------------------------- attribution and growth

def worker_rss(sample: dict[str, Any]) -> list[int]:
    return [p["rss"] for p in sample["procs"] if classify(p["title"]) == "worker"]


def per_trial(rows: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per trial (in order of finishing): peak driver RSS, peak single-worker and total-worker RSS
    within [started_at, finished_at] (the nearest sample when the window holds none)."""
    out = []
    for index, row in enumerate(sorted(rows, key=lambda r: r["finished_at"])):
        start, end = row["started_at"], row["finished_at"]
        window = [s for s in samples if start <= s["t"] <= end]
        if not window and samples:
            window = [min(samples, key=lambda s: abs(s["t"] - end))]
        out.append({
            "index": index, "key": row["key"], "status": row.get("status"), "seconds": end - start,
            "driver_peak_mib": max((s["driver_rss"] for s in window), default=0) / MIB,
            "worker_peak_mib": max((max(worker_rss(s), default=0) for s in window), default=0) / MIB,
            "workers_total_peak_mib": max((sum(worker_rss(s)) for s in window), default=0) / MIB,
        })
    return out


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of `values` over their index (0 for fewer than two values)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den


def growth(values: Sequence[float], window: int = 10) -> dict[str, float]:
    """Slope per trial, the slope over the second half only (warm-up excluded: a leak keeps growing, a
    warm-up levels off), and the mean of the first and last `window` values and their difference."""
    head, tail = values[:window], values[-window:]
    first = sum(head) / len(head) if head else 0.0
    last = sum(tail) / len(tail) if tail else 0.0
    return {"slope_mib_per_trial": slope(values), "second_half_slope_mib_per_trial": slope(values[len(values) // 2:]),
            "first_mean_mib": first, "last_mean_mib": last, "last_minus_first_mib": last - first}


def live_workers(sample: dict[str, Any]) -> int:
    return sum(1 for p in sample["procs"] if classify(p["title"]) == "worker")


def summarize(trials: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]], window: int = 10) -> dict[str, Any]:
    drivers = [t["driver_peak_mib"] for t in trials]
    totals = [t["workers_total_peak_mib"] for t in trials]
    single = [t["worker_peak_mib"] for t in trials]
    mid = [s for s in samples if live_workers(s)]  # leave out the start-up and shut-down samples
    return {
        "trials": len(trials), "ok": sum(t["status"] == "ok" for t in trials),
        "driver_peak_mib": max(drivers, default=0.0), "worker_peak_mib": max(single, default=0.0),
        "workers_total_peak_mib": max(totals, default=0.0),
        "core_peak_mib": max((sum(p["rss"] for p in s["procs"] if classify(p["title"]) == "core") for s in samples),
                             default=0) / MIB,
        "driver_growth": growth(drivers, window), "workers_total_growth": growth(totals, window),
        "worker_peak_growth": growth(single, window),
        "live_workers_first_last": [live_workers(mid[0]), live_workers(mid[-1])] if mid else [0, 0],
        "live_workers_max": max((live_workers(s) for s in samples), default=0),
    }


# ---------------------------------------------------------------- the run

def hardware() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def write_spec(args: argparse.Namespace, out: Path) -> Path:
    spec = out / "soak.yaml"
    spec.write_text(SPEC.format(generator_steps=args.generator_steps, student_steps=args.student_steps,
                                batch_size=args.batch_size, points=args.points, trial_workers=args.trial_workers,
                                cpus_per_worker=args.cpus_per_worker, output=out / "sweeps"))
    return spec


class LocalCluster:
    """cluster/local-cluster.sh with its own state folder and ports (stops only its own processes)."""

    SCRIPT = ROOT / "cluster" / "local-cluster.sh"

    def __init__(self, port: int, folder: str):
        self.env = {**os.environ, "RDSKD_LOCAL_RAY_PORT": str(port), "RDSKD_LOCAL_DASHBOARD_PORT": str(port + 1),
                    "RDSKD_LOCAL_PORT_BASE": str(port + 10), "RDSKD_LOCAL_RAY_DIR": folder,
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.folder = Path(folder)

    def _run(self, *args: str) -> str:
        return subprocess.run(["bash", str(self.SCRIPT), *args], env=self.env, capture_output=True, text=True,
                              check=True, timeout=300).stdout

    def start(self, worker_nodes: int = 1, cpus_per_node: int = 1) -> str:
        """Starts the cluster; returns its GCS address."""
        self._run("start", str(worker_nodes), str(cpus_per_node))
        env_file = dict(line.split("=", 1) for line in (self.folder / "cluster.env").read_text().split())
        return env_file["RAY_ADDRESS"]

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self._run("pids").split()]
        except subprocess.SubprocessError:
            return []

    def stop(self) -> None:
        self._run("stop")


def run_sweep(spec: Path, out: Path, interval: float, extra: Sequence[str],
              extra_pids: Callable[[], list[int]] = list) -> tuple[list[str], int, float, Sampler]:
    cmd = [sys.executable, "-m", "rdskd_dist.tune", "--spec", str(spec), "--no-tracking", "--no-plots", *extra]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.time()
    with open(out / "tune.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid, interval, extra_pids)
        sampler.start()
        code = proc.wait()
    sampler.stop()
    return cmd, code, time.time() - start, sampler


def read_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted((sweep_dir / "ledger").glob("*.json"))]


LEVEL_MIB_PER_TRIAL = 1.0


def verdict(g: dict[str, float]) -> str:
    late = g["second_half_slope_mib_per_trial"]
    if abs(late) < LEVEL_MIB_PER_TRIAL:
        return "levels off" + (f" (warm-up {g['last_minus_first_mib']:+.0f} MiB)" if g["last_minus_first_mib"] > 20 else "")
    return f"still growing ({late:+.1f} MiB per trial in the second half)"


def markdown(report: dict[str, Any]) -> str:
    s, hw = report["summary"], report["hardware"]
    dg, wg, pg = s["driver_growth"], s["workers_total_growth"], s["worker_peak_growth"]
    lines = [
        "# Soak: a long sweep of short trials (memory of the Tune driver and the Ray workers)",
        "",
        f"Command: `{report['command']}`  ",
        f"Sweep: `{report['sweep_command']}`  ",
        f"Hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} GiB, Python {hw['python']}; "
        f"load average at start {hw['load_average_at_start']} (the machine was shared with other jobs).  ",
        f"Date: {report['date']}; exit code {report['exit_code']}; wall time {report['wall_s'] / 60:.1f} min; "
        f"{s['trials']} trials ({s['ok']} ok), {report['config']}.",
        "",
        "| | peak RSS (MiB) | slope (MiB/trial) | 2nd-half slope | first 10 mean | last 10 mean | last - first |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {label} | {peak:.0f} | {g['slope_mib_per_trial']:+.2f} | {g['second_half_slope_mib_per_trial']:+.2f} | "
          f"{g['first_mean_mib']:.0f} | {g['last_mean_mib']:.0f} | {g['last_minus_first_mib']:+.0f} |"
          for label, peak, g in (("Tune driver", s["driver_peak_mib"], dg),
                                 ("largest single worker", s["worker_peak_mib"], pg),
                                 ("all workers together", s["workers_total_peak_mib"], wg))),
        f"| Ray core (GCS, raylet, agents, dashboard) | {s['core_peak_mib']:.0f} | | | | | |",
        "",
        "Growth verdict (second-half slope under 1 MiB per trial: levels off): "
        + "; ".join(f"{label} {verdict(g)}" for label, g in (("driver", dg), ("largest worker", pg),
                                                                 ("all workers", wg))) + ".",
        "",
        f"Live worker processes: {s['live_workers_first_last'][0]} at the first sample with workers, "
        f"{s['live_workers_first_last'][1]} at the last, at most {s['live_workers_max']}.",
        "",
        "Per trial: peak RSS within the trial's start-finish window, sampled every "
        f"{report['interval_s']} s (psutil, RSS of each process; shared pages count in every process). "
        "Concurrent trials share windows, so the worker figures are per window, not per trial's own PIDs. "
        "Raw samples and per-trial rows: `soak.json` (`trials`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=25, help="Sobol points (trials = 2 methods x points)")
    p.add_argument("--generator-steps", type=int, default=10)
    p.add_argument("--student-steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--trial-workers", type=int, default=1, help="Ray Train workers per trial (0: in the trial actor)")
    p.add_argument("--cpus-per-worker", type=float, default=0.99)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    p.add_argument("--out", type=Path, default=Path("/tmp/rdskd-soak"), help="work folder (sweep, log, samples)")
    p.add_argument("--cluster", action="store_true", help="run on a cluster of its own from cluster/local-cluster.sh "
                                                          "(head + 1 worker node, 1 CPU each); default: the driver's "
                                                          "local Ray")
    p.add_argument("--cluster-port", type=int, default=26400, help="the cluster's GCS port (+1 dashboard, "
                                                                   "+10.. its other servers)")
    p.add_argument("--no-write-docs", dest="write_docs", action="store_false")
    args = p.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = write_spec(args, out)
    hw = hardware()
    cluster = LocalCluster(args.cluster_port, f"/tmp/rdskd-soak-{args.cluster_port}") if args.cluster else None
    extra, extra_pids = [], list
    if cluster is not None:
        extra, extra_pids = ["--address", cluster.start()], cluster.pids
    try:
        cmd, code, wall, sampler = run_sweep(spec, out, args.interval, extra, extra_pids)
    finally:
        if cluster is not None:
            cluster.stop()
    trials = per_trial(read_rows(out / "sweeps" / "soak"), sampler.samples)
    report = {
        "command": shlex.join(["python", "bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
        "sweep_command": shlex.join(["python", *cmd[1:]]), "date": time.strftime("%Y-%m-%d %H:%M"),
        "hardware": hw, "exit_code": code, "wall_s": wall, "interval_s": args.interval,
        "config": (f"G{args.generator_steps}/S{args.student_steps} at batch {args.batch_size}, "
                   f"{args.trial_workers} Train worker(s) per trial, 2 trials at a time, "
                   + ("cluster/local-cluster.sh: head + 1 worker node, 1 CPU each" if args.cluster
                      else "a local Ray started by the driver")),
        "summary": summarize(trials, sampler.samples), "trials": trials,
    }
    (out / "samples.json").write_text(json.dumps(sampler.samples))
    text = json.dumps(report, indent=2)
    (out / "soak.json").write_text(text)
    md = markdown(report)
    (out / "soak.md").write_text(md)
    if args.write_docs:
        DOCS.mkdir(parents=True, exist_ok=True)
        (DOCS / "soak.json").write_text(text + "\n")
        (DOCS / "soak.md").write_text(md)
    print(md)
    return 0 if code == 0 and report["summary"]["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
