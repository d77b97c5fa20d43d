"""How much of a robustness sweep's spread is the hyperparameters and how much is the seed?

    python bench/seed_spread.py sweeps/A/results.parquet sweeps/B/results.parquet --method rdskd

Reads the trial tables (`results.parquet`) of one or more sweeps on the same design (same spec, points and
design seed; e.g. seed 0 in one sweep and seed 1 in another), keeps the finished trials of `--method`, and pairs
them point by point across seeds. Reported per point: the accuracy of each seed and their difference; overall:
the spread over points of each seed, and the seed-to-seed standard deviation at a fixed point, estimated from
the paired differences as std(a - b) / sqrt(2) (two seeds at each point). If that is close to the spread over
points, the sweep's spread is mostly seed noise, not sensitivity to the hyperparameters.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402


def paired_points(tables: list[Path], method: str) -> pd.DataFrame:
    """Accuracy by point (rows) and seed (columns), points finished for every seed only."""
    rows = pd.concat([pd.read_parquet(t) for t in tables], ignore_index=True)
    rows = rows[(rows["method"] == method) & (rows["status"] == "ok")]
    if rows.empty:
        raise SystemExit(f"error: no finished {method} trials in {', '.join(map(str, tables))}")
    by_point = rows.pivot_table(index="point", columns="seed", values="student_accuracy", aggfunc="first")
    return by_point.dropna()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+", type=Path, help="results.parquet of each sweep")
    p.add_argument("--method", default="rdskd")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--name", default="seed_spread")
    args = p.parse_args()
    by_point = paired_points(args.tables, args.method)
    seeds = list(by_point.columns)
    if len(seeds) != 2 or len(by_point) < 2:
        raise SystemExit(f"error: need two seeds at two or more common points, found seeds {seeds} "
                         f"at {len(by_point)} points")
    a, b = (by_point[s].tolist() for s in seeds)
    diffs = [x - y for x, y in zip(a, b)]
    seed_std = statistics.stdev(diffs) / math.sqrt(2)
    spread = {s: statistics.stdev(by_point[s]) for s in seeds}
    means = [(x + y) / 2 for x, y in zip(a, b)]  # the point's accuracy with half the seed noise variance
    lines = [f"| point | seed {seeds[0]} | seed {seeds[1]} | difference | mean |", "|---|---|---|---|---|"]
    lines += [f"| {point} | {x:.2f} | {y:.2f} | {x - y:+.2f} | {(x + y) / 2:.2f} |"
              for point, x, y in zip(by_point.index, a, b)]
    summary = (f"{args.method}, {len(by_point)} points with both seeds: std over points {spread[seeds[0]]:.2f} "
               f"(seed {seeds[0]}), {spread[seeds[1]]:.2f} (seed {seeds[1]}); seed-to-seed std at a fixed point "
               f"{seed_std:.2f} (std of the paired differences / sqrt 2); mean difference {statistics.fmean(diffs):+.2f}, "
               f"largest {max(diffs, key=abs):+.2f}; the two seeds' mean per point: std over points "
               f"{statistics.stdev(means):.2f}, min {min(means):.2f}")
    print(summary, flush=True)
    payload = {"method": args.method, "tables": [str(t) for t in args.tables], "seeds": seeds,
               "points": [int(i) for i in by_point.index], "accuracy": {str(s): by_point[s].tolist() for s in seeds},
               "std_over_points": {str(s): v for s, v in spread.items()}, "seed_std": seed_std,
               "seed_mean_std_over_points": statistics.stdev(means), "seed_mean_min": min(means)}
    write_results(args.out_dir, args.name, payload, f"# Seed against hyperparameter spread\n\n{summary}.\n\n"
                  + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
