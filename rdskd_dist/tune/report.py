"""Robustness summary of a sweep: per-method statistics, paired differences, rich table, JSON, Markdown.

Definitions (accuracies in percent, over a method's trials with status ok only; failed and
early-stopped trials are counted, listed and never scored):

* mean, std (sample standard deviation, ddof=1; 0 for a single trial), min, p10 (10th
  percentile, linear interpolation as numpy.percentile), max;
* within_1pt: share of the method's scored trials whose accuracy is at least its best minus 1
  percentage point;
* paired differences against the reference method (RDSKD when swept): over the units (point,
  seed) where both trials are ok, d = acc_method - acc_reference; mean, std (ddof=1), min, max and
  the number of pairs. In optimize mode points differ between methods, so nothing is paired.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import numpy as np

from rdskd_dist.files import atomic_write_json, atomic_write_text

WITHIN = 1.0  # percentage points


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def describe(values: Iterable[float]) -> dict[str, Optional[float]]:
    v = np.asarray([float(x) for x in values], dtype=float)
    if len(v) == 0:
        return {"mean": None, "std": None, "min": None, "p10": None, "max": None, "within_1pt": None}
    best = float(v.max())
    return {"mean": float(v.mean()), "std": _std(v), "min": float(v.min()), "p10": float(np.percentile(v, 10)),
            "max": best, "within_1pt": float(np.mean(v >= best - WITHIN))}


def _unit(row: dict[str, Any]) -> tuple:
    return (row.get("point"), row.get("seed"))


def summarize(rows: list[dict[str, Any]], methods: list[str], reference: str, mode: str = "robustness",
              name: str = "", expected: Optional[int] = None) -> dict[str, Any]:
    """The summary as plain data (what summary.json holds)."""
    by_method: dict[str, dict[str, Any]] = {}
    ref_acc = {_unit(r): float(r["student_accuracy"]) for r in rows
               if r["method"] == reference and r.get("status") == "ok"}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if r.get("status") == "ok"]
        stats: dict[str, Any] = {
            "trials": len(mine), "ok": len(ok), "failed": sum(r.get("status") == "failed" for r in mine),
            "stopped": sum(r.get("status") == "stopped" for r in mine),
            **describe(r["student_accuracy"] for r in ok),
        }
        if mode == "robustness" and method != reference:
            diffs = np.asarray([float(r["student_accuracy"]) - ref_acc[_unit(r)] for r in ok if _unit(r) in ref_acc])
            stats["paired"] = {"against": reference, "pairs": int(len(diffs)),
                               **({"mean": float(diffs.mean()), "std": _std(diffs), "min": float(diffs.min()),
                                   "max": float(diffs.max())} if len(diffs) else
                                  {"mean": None, "std": None, "min": None, "max": None})}
        else:
            stats["paired"] = None
        if ok:
            best = max(ok, key=lambda r: float(r["student_accuracy"]))
            stats["best"] = {"key": best["key"], "student_accuracy": float(best["student_accuracy"]),
                             **{k: best[k] for k in sorted(best) if k.startswith("mult_") and best[k] is not None}}
        else:
            stats["best"] = None
        by_method[method] = stats
    failed = [{"key": r["key"], "method": r["method"], "status": r["status"], "error": r.get("error")}
              for r in rows if r.get("status") != "ok"]
    teacher = [float(r["teacher_accuracy"]) for r in rows if r.get("teacher_accuracy") is not None]
    return {"sweep": name, "mode": mode, "reference_method": reference, "trials_finished": len(rows),
            "trials_expected": expected, "teacher_accuracy": teacher[0] if teacher else None,
            "methods": by_method, "not_scored": failed}


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
        out.append(row)
    return out


def headers(summary: dict[str, Any]) -> list[str]:
    h = ["method", "ok", "failed"] + (["stopped"] if summary["mode"] == "optimize" else []) + \
        ["mean", "std", "min", "p10", "max", "≤1pt of best"]
    if summary["mode"] == "robustness":
        h += ["Δmean", "Δstd", "Δmin", "Δmax", "pairs"]
    return h


def title(summary: dict[str, Any]) -> str:
    done = summary["trials_finished"]
    expected = summary["trials_expected"]
    progress = f"{done}/{expected} trials" if expected else f"{done} trials"
    teacher = summary.get("teacher_accuracy")
    t = f", teacher {teacher:.2f}%" if teacher is not None else ""
    delta = f"; Δ = minus {summary['reference_method']}, paired" if summary["mode"] == "robustness" else ""
    return f"{summary['sweep']} ({summary['mode']}, {progress}{t}): student test accuracy, %{delta}"


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
    lines += ["", "Statistics over trials with status ok; std is the sample standard deviation; p10 the 10th "
              "percentile; ≤1pt of best the share of scored trials within 1 percentage point of the method's best."]
    if summary["mode"] == "robustness":
        lines.append(f"Δ: paired difference, accuracy minus {summary['reference_method']}'s at the same point and "
                     "seed, over the pairs where both trials are ok (mean, std, min, max).")
    best = [(m, s["best"]) for m, s in summary["methods"].items() if s.get("best")]
    if summary["mode"] == "optimize" and best:
        lines += ["", "## Best trials", ""]
        for m, b in best:
            params = ", ".join(f"{k}={v:.4g}" for k, v in b.items() if k.startswith("mult_"))
            lines.append(f"- {m}: {b['student_accuracy']:.2f}% ({b['key']}; {params})")
    if summary["not_scored"]:
        lines += ["", "## Trials not scored", ""]
        lines += [f"- {f['key']} ({f['status']}): {f['error'] or ''}" for f in summary["not_scored"]]
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], folder) -> None:
    from pathlib import Path

    folder = Path(folder)
    atomic_write_json(summary, folder / "summary.json")
    atomic_write_text(markdown(summary), folder / "summary.md")
