"""Do the health numbers rank students? Rank correlation of each data-free health number with test accuracy.

    python bench/health_vs_accuracy.py docs/results/mnist_robustness_*/results.parquet docs/results/any_teacher*.json

A run's health report (`rdskd_dist/engine/health.py`) is what a user without test data sees: the teacher's
effective number of classes and top-class share on fresh generated samples, its mean confidence, and the
student-teacher agreement on those samples. It is built to flag collapse. This script asks the next question on
runs already made: among runs of one method (a sweep's trials) or one teacher (`bench/any_teacher.py`'s runs),
does a higher health number go with a higher test accuracy? Spearman's rank correlation per group of at least
`--min-runs` runs, with the group's accuracy range and how many runs were flagged as collapsed and their mean
accuracy. Inputs: sweep tables (`results.parquet`, finished trials) and any-teacher result files (`runs` with
`health`); other files are refused with a one-line error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

HEALTH = ("agreement", "effective_classes", "mean_confidence", "top_class_fraction")


def sweep_rows(path: Path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    if "status" in table:
        table = table[table["status"] == "ok"]
    missing = [f"health_{h}" for h in HEALTH if f"health_{h}" not in table]
    if missing:
        raise SystemExit(f"error: {path}: no health columns ({', '.join(missing)}); a sweep from before health reports")
    return pd.DataFrame({"source": path.parent.name, "group": table["method"], "accuracy": table["student_accuracy"],
                         "collapsed": table.get("health_collapsed", pd.Series(False, index=table.index)).fillna(False),
                         **{h: table[f"health_{h}"] for h in HEALTH}})


def any_teacher_rows(path: Path) -> pd.DataFrame:
    runs = json.loads(path.read_text()).get("runs")
    if not isinstance(runs, list):
        raise SystemExit(f"error: {path}: not an any-teacher result file (no list of runs)")
    rows = [{"source": path.stem, "group": r["teacher"], "accuracy": r["student_accuracy"],
             "collapsed": bool(r["health"].get("collapsed")), **{h: r["health"].get(h) for h in HEALTH}}
            for r in runs if isinstance(r, dict) and r.get("health")]
    return pd.DataFrame(rows, columns=["source", "group", "accuracy", "collapsed", *HEALTH])


def load(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"error: {path}: no such file")
        frames.append(sweep_rows(path) if path.suffix == ".parquet" else any_teacher_rows(path))
    return pd.concat(frames, ignore_index=True)


def correlations(rows: pd.DataFrame, min_runs: int) -> list[dict]:
    """Per source and group with enough runs: accuracy range, collapse count and Spearman rho per health number."""
    out = []
    for (source, group), runs in rows.groupby(["source", "group"], sort=True):
        runs = runs.dropna(subset=["accuracy"])
        if len(runs) < min_runs:
            continue
        flagged = runs[runs["collapsed"].astype(bool)]
        rho = {}
        for h in HEALTH:
            value = runs["accuracy"].corr(runs[h].astype(float), method="spearman")
            rho[h] = None if value is None or math.isnan(value) else round(float(value), 3)
        out.append({"source": source, "group": group, "runs": len(runs),
                    "accuracy_min": float(runs["accuracy"].min()), "accuracy_max": float(runs["accuracy"].max()),
                    "collapsed": len(flagged),
                    "collapsed_mean_accuracy": float(flagged["accuracy"].mean()) if len(flagged) else None,
                    "spearman": rho})
    return out


def markdown(groups: list[dict], min_runs: int) -> str:
    def fmt(v, spec="+.2f"):
        return "-" if v is None else format(v, spec)

    lines = ["| source | method or teacher | runs | accuracy min-max % | collapsed (mean acc. %) | "
             + " | ".join(f"rho({h})" for h in HEALTH) + " |", "|---|---|---|---|---|" + "---|" * len(HEALTH)]
    for g in groups:
        flagged = f"{g['collapsed']} ({fmt(g['collapsed_mean_accuracy'], '.2f')})" if g["collapsed"] else "0"
        lines.append(f"| {g['source']} | {g['group']} | {g['runs']} | {g['accuracy_min']:.2f}-{g['accuracy_max']:.2f} "
                     f"| {flagged} | " + " | ".join(fmt(g["spearman"][h]) for h in HEALTH) + " |")
    return ("# Health numbers against test accuracy\n\nSpearman's rank correlation between each health number (fresh "
            "generated samples of the final generator, no test data) and the student's test accuracy, per sweep "
            f"method or per teacher, over groups of at least {min_runs} runs. +1: ranking runs by the health number "
            "ranks them by accuracy; 0: it says nothing about their order.\n\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="sweep results.parquet files and any-teacher result JSONs")
    p.add_argument("--min-runs", type=int, default=4, help="smallest group that gets a correlation")
    p.add_argument("--name", default="health_vs_accuracy")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    args = p.parse_args(argv)
    if args.min_runs < 3:
        raise SystemExit("error: --min-runs must be at least 3")
    groups = correlations(load(args.inputs), args.min_runs)
    if not groups:
        raise SystemExit(f"error: no method or teacher has {args.min_runs} runs with health numbers in these inputs")
    report = markdown(groups, args.min_runs)
    write_results(args.out_dir, args.name, {"inputs": [str(p) for p in args.inputs], "min_runs": args.min_runs,
                                            "groups": groups}, report)
    print(report)


if __name__ == "__main__":
    main()
