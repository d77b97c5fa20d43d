"""Reporting a sweep: per-method statistics, paired differences, health, the rich table, JSON, Markdown,
and `report_sweep`, which writes them (and the plots) from the ledger.

Definitions (over a method's scored trials: status ok and a finite score; failed and early-stopped
trials are counted, listed and never scored). The score is the spec's `objective` (default: student
test accuracy in percent, higher is better):

* mean, std (sample standard deviation, ddof=1; 0 for a single trial), min, p10 (10th
  percentile, linear interpolation as numpy.percentile), max;
* within_1pt: share of the method's scored trials whose score is within 1 unit (percentage point)
  of its best;
* paired differences against the reference method (RDSKD when swept): over the units (point,
  seed) where both trials are scored, d = score_method - score_reference; mean, std (ddof=1), min,
  max and the number of pairs. In optimize mode points differ between methods, so nothing is paired;
* health (engine/health.py, on fresh generated samples): mean effective classes and mean
  student-teacher agreement over the ok trials, and how many of them collapsed: counted on the stored
  samples the student drew from where the run kept them (pool, memory bank), with the trials whose final
  generator alone collapsed counted apart.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from rdskd_dist.errors import one_line
from rdskd_dist.files import atomic_write_json, atomic_write_text
from rdskd_dist.redact import redact
from rdskd_dist.tune.ledger import SweepFolder
from rdskd_dist.tune.score import Objective
from rdskd_dist.tune.spec import SweepSpec

WITHIN = 1.0  # percentage points


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def describe(values: Iterable[float], mode: str = "max") -> dict[str, Optional[float]]:
    v = np.asarray([float(x) for x in values], dtype=float)
    if len(v) == 0:
        return {"mean": None, "std": None, "min": None, "p10": None, "max": None, "within_1pt": None}
    near = v >= v.max() - WITHIN if mode == "max" else v <= v.min() + WITHIN
    return {"mean": float(v.mean()), "std": _std(v), "min": float(v.min()), "p10": float(np.percentile(v, 10)),
            "max": float(v.max()), "within_1pt": float(np.mean(near))}


def _unit(row: dict[str, Any]) -> tuple:
    return (row.get("point"), row.get("seed"))


def _mean(values: Iterable[Any]) -> Optional[float]:
    v = [float(x) for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _student_samples_collapsed(row: dict[str, Any]) -> bool:
    """Whether what the student learned from collapsed: the stored samples it drew from where the run kept any,
    else the final generator's."""
    stored = row.get("health_stored_collapsed")
    return bool(row.get("health_collapsed")) if stored is None else bool(stored)


def health(ok: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean effective classes and agreement over the ok trials that have them, how many trials' student samples
    collapsed, how many more had only their final generator collapse (the bank kept every class), and in how many
    the student's own predictions collapsed where the teacher's did not (a student that did not learn)."""
    return {"effective_classes": _mean(r.get("health_effective_classes") for r in ok),
            "agreement": _mean(r.get("health_agreement") for r in ok),
            "collapsed": sum(_student_samples_collapsed(r) for r in ok),
            "generator_only": sum(bool(r.get("health_collapsed")) and not _student_samples_collapsed(r) for r in ok),
            "student": sum(bool(r.get("health_student_collapsed")) and not r.get("health_collapsed") for r in ok)}


MIN_TRIALS_FOR_SENSITIVITY = 6


def sensitivity(scored: list[dict[str, Any]], columns: dict[str, str], score: Objective) -> dict[str, dict[str, Any]]:
    """Which swept option moves the score, and which way: per option (its row column), Spearman's rank correlation
    of the score with the option's value, and the mean score over the trials with its lowest and its highest third
    of values. Options with fewer than MIN_TRIALS_FOR_SENSITIVITY scored trials or under 3 distinct values are left
    out. A correlation over one sweep's points is a lead for a paired run, not a result."""
    from scipy.stats import spearmanr

    out: dict[str, dict[str, Any]] = {}
    for option, column in columns.items():
        pairs = sorted((float(r[column]), score.value(r)) for r in scored
                       if isinstance(r.get(column), (int, float)) and math.isfinite(float(r[column])))
        if len(pairs) < MIN_TRIALS_FOR_SENSITIVITY or len({x for x, _ in pairs}) < 3:
            continue
        values, scores = zip(*pairs)
        third = len(pairs) // 3
        out[option] = {"column": column, "trials": len(pairs), "spearman": float(spearmanr(values, scores).statistic),
                       "low_third_mean": float(np.mean(scores[:third])), "low_third_upto": values[third - 1],
                       "high_third_mean": float(np.mean(scores[-third:])), "high_third_from": values[-third]}
    return out


def summarize(rows: list[dict[str, Any]], methods: list[str], reference: str, mode: str = "robustness",
              name: str = "", expected: Optional[int] = None, objective: Optional[Objective] = None,
              swept: Optional[dict[str, dict[str, str]]] = None) -> dict[str, Any]:
    """The summary as plain data (what summary.json holds). `swept`: per method, the options the sweep varies for
    it and their row columns (for `sensitivity`)."""
    score = objective or Objective()
    by_method: dict[str, dict[str, Any]] = {}
    ref_score = {_unit(r): score.value(r) for r in score.scored(rows) if r["method"] == reference}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if r.get("status") == "ok"]
        scored = score.scored(mine)
        stats: dict[str, Any] = {
            "trials": len(mine), "ok": len(ok), "failed": sum(r.get("status") == "failed" for r in mine),
            "stopped": sum(r.get("status") == "stopped" for r in mine),
            "repeats": sum(bool(r.get("same_as")) for r in mine),  # rows that copy another trial's result
            **describe((score.value(r) for r in scored), score.mode), "health": health(ok),
            "sensitivity": sensitivity(scored, (swept or {}).get(method, {}), score),
        }
        if mode == "robustness" and method != reference:
            pairs = [(score.value(r), ref_score[_unit(r)]) for r in scored if _unit(r) in ref_score]
            diffs = np.asarray([mine_v - ref_v for mine_v, ref_v in pairs])
            stats["paired"] = {"against": reference, "pairs": int(len(diffs)),
                               **({"mean": float(diffs.mean()), "std": _std(diffs), "min": float(diffs.min()),
                                   "max": float(diffs.max())} if len(diffs) else
                                  {"mean": None, "std": None, "min": None, "max": None}),
                               # both methods' statistics on exactly these units: spreads compare like with like
                               # while a method has run only some of the reference's points
                               "method_on_pairs": describe((m for m, _ in pairs), score.mode),
                               "reference_on_pairs": describe((r for _, r in pairs), score.mode)}
        else:
            stats["paired"] = None
        best = score.best(mine)
        stats["best"] = None if best is None else {
            "key": best["key"], score.metric: score.value(best),
            **{k: best[k] for k in sorted(best) if k.startswith("mult_") and best[k] is not None}}
        by_method[method] = stats
    failed = [{"key": r["key"], "method": r["method"], "status": r["status"], "error": r.get("error")}
              for r in rows if r.get("status") != "ok"]
    teacher = [float(r["teacher_accuracy"]) for r in rows if r.get("teacher_accuracy") is not None]
    return {"sweep": name, "mode": mode, "reference_method": reference, "trials_finished": len(rows),
            "trials_expected": expected, "teacher_accuracy": teacher[0] if teacher else None,
            "score": {"metric": score.metric, "mode": score.mode}, "methods": by_method, "not_scored": failed}


def same_points(summary: dict[str, Any]) -> list[str]:
    """One line per paired method: its mean, std and min next to the reference's on the same (point, seed) units."""
    lines = []
    reference = summary["reference_method"]
    for method, s in summary["methods"].items():
        p = s.get("paired") or {}
        mine, ref = p.get("method_on_pairs"), p.get("reference_on_pairs")
        if not p.get("pairs") or mine is None or ref is None:
            continue
        if s.get("repeats"):  # one trial per seed stands for every point: a spread of 0 says nothing
            verdict = (f"{s['repeats']} of {s['trials']} of {method}'s rows repeat another trial's result (no swept "
                       "option changes its config), so its spread is its seeds' alone, not comparable")
        else:
            wider = "smaller" if mine["std"] < ref["std"] else "larger" if mine["std"] > ref["std"] else "the same"
            verdict = f"{method}'s spread is {wider}"
        lines.append(f"{method} {_f(mine['mean'])} +- {_f(mine['std'])} (min {_f(mine['min'])}) against {reference} "
                     f"{_f(ref['mean'])} +- {_f(ref['std'])} (min {_f(ref['min'])}) on the same {p['pairs']} "
                     f"point-seed pairs: {verdict}")
    return lines


def what_moves_the_score(summary: dict[str, Any]) -> list[str]:
    """One line per method with a sensitivity: its options by the size of their rank correlation with the score."""
    lines = []
    for method, s in summary["methods"].items():
        options = sorted((s.get("sensitivity") or {}).items(), key=lambda kv: -abs(kv[1]["spearman"]))
        if not options:
            continue
        parts = [f"{name} rho {o['spearman']:+.2f} ({_f(o['low_third_mean'])} at <= {o['low_third_upto']:.3g}, "
                 f"{_f(o['high_third_mean'])} at >= {o['high_third_from']:.3g})" for name, o in options]
        lines.append(f"{method} ({options[0][1]['trials']} trials): " + "; ".join(parts))
    return lines


def _score(summary: dict[str, Any]) -> Objective:
    return Objective(**summary.get("score", {}))


def _f(x: Optional[float], fmt: str = "{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    out = []
    for method, s in summary["methods"].items():
        row = [method, str(s["ok"]), str(s["failed"])]
        if summary["mode"] == "optimize":
            row.append(str(s["stopped"]))
        row += [_f(s["mean"]), _f(s["std"]), _f(s["min"]), _f(s["p10"]), _f(s["max"]), _pct(s["within_1pt"])]
        if summary["mode"] == "robustness":
            p = s["paired"]
            if p is None:
                row += ["ref", "", "", "", ""]
            else:
                row += [_f(p["mean"], "{:+.2f}"), _f(p["std"]), _f(p["min"], "{:+.2f}"), _f(p["max"], "{:+.2f}"),
                        str(p["pairs"])]
        h = s.get("health") or {}
        collapsed = "-" if h.get("collapsed") is None else str(h["collapsed"])
        if h.get("generator_only"):
            collapsed += f" (+{h['generator_only']} final gen.)"
        if h.get("student"):
            collapsed += f" ({h['student']} student did not learn)"
        row += [_f(h.get("effective_classes"), "{:.1f}"), _f(h.get("agreement"), "{:.1f}"), collapsed]
        out.append(row)
    return out


def headers(summary: dict[str, Any]) -> list[str]:
    h = ["method", "ok", "failed"] + (["stopped"] if summary["mode"] == "optimize" else []) + \
        ["mean", "std", "min", "p10", "max", "≤1pt of best"]
    if summary["mode"] == "robustness":
        h += ["Δmean", "Δstd", "Δmin", "Δmax", "pairs"]
    return h + ["eff. classes", "agree %", "collapsed"]


def title(summary: dict[str, Any]) -> str:
    done = summary["trials_finished"]
    expected = summary["trials_expected"]
    progress = f"{done}/{expected} trials" if expected else f"{done} trials"
    teacher = summary.get("teacher_accuracy")
    t = f", teacher {teacher:.2f}%" if teacher is not None else ""
    delta = f"; Δ = minus {summary['reference_method']}, paired" if summary["mode"] == "robustness" else ""
    return f"{summary['sweep']} ({summary['mode']}, {progress}{t}): {_score(summary).label}{delta}"


def rich_table(summary: dict[str, Any]):
    from rich.table import Table

    table = Table(title=title(summary), title_justify="left")
    for i, h in enumerate(headers(summary)):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in table_rows(summary):
        table.add_row(*row)
    return table


def markdown(summary: dict[str, Any]) -> str:
    h = headers(summary)
    lines = [f"# {title(summary)}", "", "| " + " | ".join(h) + " |", "|" + "|".join("---" for _ in h) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary)]
    score = _score(summary)
    better = "higher" if score.mode == "max" else "lower"
    lines += ["", f"Statistics of the score ({score.metric}, {better} is better: each trial's value in its final "
              "result, at the end of its budget, never a best-so-far) over trials with status ok; std is the "
              "sample standard deviation; p10 the 10th percentile; ≤1pt of best the share of scored trials within 1 "
              "point of the method's best. Health, over the ok trials' fresh generated samples: mean effective "
              "classes and mean student-teacher agreement; collapsed: trials whose student learned from collapsed "
              "samples (the stored pool and memory bank it drew from where the run kept them, else the final "
              "generator's), and in brackets trials whose final generator alone collapsed."]
    if summary["mode"] == "robustness":
        lines.append(f"Δ: paired difference, score minus {summary['reference_method']}'s at the same point and "
                     "seed, over the pairs where both trials are ok (mean, std, min, max).")
        paired = same_points(summary)
        if paired:
            lines += ["", "## On the same points", ""] + [f"- {line}" for line in paired]
    moved = what_moves_the_score(summary)
    if moved:
        lines += ["", "## What moves the score", ""] + [f"- {line}" for line in moved]
        lines += ["", "rho: Spearman's rank correlation of the score with the option's value (a multiplier of the "
                  "reference for a relative option); in brackets the mean score over the trials with the lowest and "
                  "the highest third of its values. Over one sweep's points it is a lead for a paired run, not a "
                  "result."]
    best = [(m, s["best"]) for m, s in summary["methods"].items() if s.get("best")]
    if summary["mode"] == "optimize" and best:
        lines += ["", "## Best trials", ""]
        for m, b in best:
            params = ", ".join(f"{k}={v:.4g}" for k, v in b.items() if k.startswith("mult_"))
            lines.append(f"- {m}: {score.format(b[score.metric])} ({b['key']}; {params})")
    if summary["not_scored"]:
        lines += ["", "## Trials not scored", ""]
        lines += [f"- {f['key']} ({f['status']}): {f['error'] or ''}" for f in summary["not_scored"]]
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], folder) -> None:
    folder = Path(folder)
    atomic_write_json(summary, folder / "summary.json")
    atomic_write_text(markdown(summary), folder / "summary.md")


def timing_summary(rows: list[dict[str, Any]]) -> Optional[str]:
    """One line: the median split of a trial's wall time over the rows that have it (see trainable.timing_columns)."""
    parts = [("launch", "launch_s"), ("startup", "startup_s"), ("setup", "setup_s"), ("train", "train_s"),
             ("eval", "eval_s"), ("finish", "finish_s")]
    timed = [r for r in rows if isinstance(r.get("train_s"), (int, float)) and isinstance(r.get("trial_wall_s"), (int, float))]
    if not timed:
        return None
    med = {key: statistics.median(float(r.get(key) or 0.0) for r in timed) for _, key in parts + [("", "trial_wall_s")]}
    total = med["trial_wall_s"] + med["launch_s"]
    over = statistics.median(float(r.get("overhead_frac") or 0.0) for r in timed)
    split = ", ".join(f"{name} {med[key]:.1f}s" for name, key in parts)
    shares = [float(r["train_cpu_s"]) / float(r["train_s"]) for r in timed
              if isinstance(r.get("train_cpu_s"), (int, float)) and float(r["train_s"]) > 0]
    share = f"; training got {statistics.median(shares):.2f} CPU" if shares else ""
    return (f"trial time (median of {len(timed)}): {split}; total {total:.1f}s, "
            f"{100 * over:.0f}% outside training{share}")


def swept_columns(spec: SweepSpec) -> dict[str, dict[str, str]]:
    """Per method, the options the spec varies for it (design.swept_options) and the row column of each."""
    from rdskd_dist.tune.design import design_column, swept_options

    return {m: {name: design_column(name, dim) for name, dim in options.items()}
            for m, options in swept_options(spec).items()}


@dataclass
class SweepOutcome:
    spec: SweepSpec
    folder: SweepFolder
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    complete: bool
    plots: list[Path]


def copy_sweep_files(storage, folder: SweepFolder, console) -> None:
    """The sweep folder's files into the storage (`tune/storage.py`), if the sweep has one."""
    if storage is None:
        return
    try:
        storage.upload(folder.path)
    except Exception as exc:  # noqa: BLE001 - the results are complete locally; say where they are
        console.print(f"warning: could not copy the sweep's files to {redact(storage.sweep_uri())}: {one_line(exc)} "
                      f"(they are in {folder.path})", highlight=False)
        return
    console.print(f"copied to storage: {redact(storage.sweep_uri())}", highlight=False)


def report_sweep(spec: SweepSpec, folder: SweepFolder, console, plots: bool = True, storage=None) -> SweepOutcome:
    """results.parquet, summary.json/.md and the plots from the ledger; the table and where things are."""
    from rdskd_dist.tune.modes import mode_of

    mode = mode_of(spec)
    order = {m: i for i, m in enumerate(spec.methods)}
    rows = sorted(folder.rows(), key=lambda r: (order.get(r["method"], len(order)), -1 if r.get("point") is None else r["point"],
                                                r.get("seed") or 0, r["key"]))
    folder.write_parquet(rows, design_columns=[k for k, d in spec.space.items() if d.relative])
    summary = summarize(rows, spec.methods, spec.reference, spec.mode, spec.name, mode.expected_trials(spec),
                        spec.objective, swept_columns(spec))
    write_summary(summary, folder.path)
    made: list[Path] = []
    if plots and rows:
        from rdskd_dist.tune.plots import make_plots

        made = make_plots(rows, spec, folder.path)
    complete = mode.is_complete(spec, rows)
    console.print(rich_table(summary))
    for line in same_points(summary):
        console.print(f"  {line}", highlight=False)
    timing = timing_summary(rows)
    if timing:
        console.print(timing, highlight=False)
    for method, stats in summary["methods"].items():
        if stats["repeats"]:
            console.print(f"  {method}: {stats['repeats']} of {stats['trials']} rows repeat another "
                          "trial's result (no swept option changes its config): its spread is its seeds' alone",
                          highlight=False)
    for item in summary["not_scored"]:
        console.print(f"  not scored: {item['key']} ({item['status']}): {item['error']}", highlight=False)
    console.print(f"results: {folder.parquet}  summary: {folder.path / 'summary.md'}"
                  + (f"  plots: {folder.path / 'plots'}" if made else ""), highlight=False)
    copy_sweep_files(storage, folder, console)
    if not complete:
        console.print(f"sweep incomplete: {len(rows)} of {mode.expected_trials(spec)} trials finished; run the same "
                      "command with --resume to finish it", highlight=False)
    return SweepOutcome(spec, folder, rows, summary, complete, made)
