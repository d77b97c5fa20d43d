"""How much of a robustness sweep's spread is the hyperparameters and how much is the seed?

    python bench/seed_spread.py sweeps/A/results.parquet sweeps/B/results.parquet --method rdskd
    python bench/seed_spread.py sweeps/fast/results.parquet sweeps/long/results.parquet --pair sweeps

Reads the trial tables (`results.parquet`) of one or more sweeps on the same design (same spec, points and
design seed; e.g. seed 0 in one sweep and seed 1 in another), keeps the finished trials of `--method`, and pairs
them point by point across seeds. Reported per point: the accuracy of each seed and their difference; overall:
the spread over points of each seed, and the seed-to-seed standard deviation at a fixed point, estimated from
the paired differences as std(a - b) / sqrt(2) (two seeds at each point). If that is close to the spread over
points, the sweep's spread is mostly seed noise, not sensitivity to the hyperparameters.

With `--pair sweeps` the tables are two sweeps of one design at different settings (e.g. two budgets), paired by
point and seed: each sweep's spread and minimum over the common points, the paired differences, and the
correlation of the accuracies over points (does the same point stay weak when the setting changes?).
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


def paired_points(tables: list[Path], method: str, by: str = "seed") -> pd.DataFrame:
    """Accuracy by point (rows) and seed (columns), points finished for every seed only; with by="sweep", by
    (point, seed) and sweep (each table's folder name), pairs finished in every sweep only."""
    rows = pd.concat([pd.read_parquet(t).assign(sweep=t.parent.name) for t in tables], ignore_index=True)
    rows = rows[(rows["method"] == method) & (rows["status"] == "ok")]
    if rows.empty:
        raise SystemExit(f"error: no finished {method} trials in {', '.join(map(str, tables))}")
    index = "point" if by == "seed" else ["point", "seed"]
    by_point = rows.pivot_table(index=index, columns=by, values="student_accuracy", aggfunc="first")
    return by_point.dropna()


def compare_sweeps(args) -> None:
    """Two sweeps of one design paired by point and seed (the --pair sweeps report)."""
    if len({t.parent.name for t in args.tables}) != 2:
        raise SystemExit("error: --pair sweeps needs two results.parquet in two differently named sweep folders")
    by_point = paired_points(args.tables, args.method, by="sweep")
    names = [t.parent.name for t in args.tables]
    if len(by_point) < 3:
        raise SystemExit(f"error: need three or more (point, seed) pairs finished in both sweeps, found {len(by_point)}")
    a, b = (by_point[n].tolist() for n in names)
    diffs = [y - x for x, y in zip(a, b)]
    corr = statistics.correlation(a, b)
    stats = {n: {"mean": statistics.fmean(v), "std": statistics.stdev(v), "min": min(v)}
             for n, v in ((names[0], a), (names[1], b))}
    summary = (f"{args.method}, {len(by_point)} (point, seed) pairs finished in both: "
               + "; ".join(f"{n} mean {s['mean']:.2f}, std {s['std']:.2f}, min {s['min']:.2f}" for n, s in stats.items())
               + f"; {names[1]} - {names[0]}: mean {statistics.fmean(diffs):+.2f}, from {min(diffs):+.2f} to "
               f"{max(diffs):+.2f}; correlation over points {corr:.2f}")
    print(summary, flush=True)
    lines = [f"| point | seed | {names[0]} | {names[1]} | difference |", "|---|---|---|---|---|"]
    lines += [f"| {point} | {seed} | {x:.2f} | {y:.2f} | {y - x:+.2f} |"
              for (point, seed), x, y in zip(by_point.index, a, b)]
    payload = {"method": args.method, "tables": [str(t) for t in args.tables], "sweeps": names,
               "pairs": [[int(p), int(s)] for p, s in by_point.index], "accuracy": {n: by_point[n].tolist() for n in names},
               "stats": stats, "difference_mean": statistics.fmean(diffs), "correlation": corr}
    write_results(args.out_dir, args.name, payload, f"# Two sweeps of one design, paired by point\n\n{summary}.\n\n"
                  + "\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+", type=Path, help="results.parquet of each sweep")
    p.add_argument("--method", default="rdskd")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--name", default="seed_spread")
    p.add_argument("--pair", choices=["seeds", "sweeps"], default="seeds",
                   help="pair two seeds of one setting (default) or two sweeps (settings) at the same seeds")
    args = p.parse_args()
    if args.pair == "sweeps":
        return compare_sweeps(args)
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
