"""PNG plots of a sweep (matplotlib, Agg): the score (the spec's objective, by default student test
accuracy) per method, the score against each swept option, and Optuna parameter importances (from a
study rebuilt from the Parquet rows). File names keep `accuracy` for the default score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rdskd_dist.tune.space import Dim
from rdskd_dist.tune.spec import SweepSpec


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(rows: list[dict[str, Any]], spec: SweepSpec, method: str) -> list[tuple[dict[str, Any], float]]:
    """The method's scored rows, each with its score."""
    return [(r, spec.objective.value(r)) for r in spec.objective.scored(rows) if r["method"] == method]


def _axis(spec: SweepSpec) -> str:
    return f"{spec.objective.name} (%)" if spec.objective.percent else spec.objective.name


def design_value(row: dict[str, Any], name: str, dim: Dim) -> float | None:
    from rdskd_dist.tune.design import design_column

    value = row.get(design_column(name, dim))
    return None if value is None else float(value)


def accuracy_by_method(rows: list[dict[str, Any]], spec: SweepSpec, path: Path) -> Path:
    """Box + strip of the score per method; in robustness mode the trials of one point and seed are joined."""
    plt = _plt()
    methods = spec.methods
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(methods), 4.2))
    rng = np.random.default_rng(0)
    jitter = {r["key"]: rng.uniform(-0.08, 0.08) for r in rows}
    data = [[v for _, v in _ok(rows, spec, m)] for m in methods]
    if any(data):
        ax.boxplot([d if d else [np.nan] for d in data], positions=range(len(methods)), widths=0.45,
                   showfliers=False, medianprops={"color": "black"})
    if spec.mode == "robustness":
        units: dict[tuple, list[tuple[float, float]]] = {}
        for i, m in enumerate(methods):
            for r, v in _ok(rows, spec, m):
                units.setdefault((r["point"], r["seed"]), []).append((i + jitter[r["key"]], v))
        for pts in units.values():
            if len(pts) > 1:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, color="0.6", alpha=0.45, linewidth=0.8, zorder=1)
    for i, m in enumerate(methods):
        ok = _ok(rows, spec, m)
        ax.scatter([i + jitter[r["key"]] for r, _ in ok], [v for _, v in ok], s=18, zorder=3,
                   color=f"C{i}")
    labels = []
    for m in methods:
        bad = sum(1 for r in rows if r["method"] == m) - len(_ok(rows, spec, m))
        labels.append(f"{m}\n({bad} not scored)" if bad else m)
    ax.set_xticks(range(len(methods)), labels)
    ax.set_ylabel(_axis(spec))
    ax.set_title(f"{spec.name}: {spec.objective.name} per method"
                 + ("\n(lines join the trials of one point and seed)" if spec.mode == "robustness" else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_vs_options(rows: list[dict[str, Any]], spec: SweepSpec, path: Path) -> Path | None:
    """One panel per swept option: the score against its design value (multiplier when relative)."""
    if not spec.space:
        return None
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from rdskd_dist.tune.design import swept_options

    plt = _plt()
    varied = swept_options(spec)
    n = len(spec.space)
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for k, (name, dim) in enumerate(spec.space.items()):
        ax = axes[k // cols][k % cols]
        for i, m in enumerate(spec.methods):
            if name not in varied[m]:
                continue
            pts = [(design_value(r, name, dim), v) for r, v in _ok(rows, spec, m)]
            pts = [p for p in pts if p[0] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, s=16, color=f"C{i}", label=m, alpha=0.85)
        if dim.log and dim.choices is None:
            ax.set_xscale("log")
            ax.set_xlim(dim.low / 1.15, dim.high * 1.15)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{name} (x reference)" if dim.relative else name)
        ax.set_ylabel(_axis(spec))
        ax.grid(alpha=0.3)
        if k == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for k in range(n, nrows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"{spec.name}: {spec.objective.name} against each swept option (methods whose reference value is 0 are left out)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


MIN_TRIALS_FOR_IMPORTANCE = 5


def importances(rows: list[dict[str, Any]], spec: SweepSpec) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances per method, from a study rebuilt from the ok rows."""
    import optuna

    from rdskd_dist.tune.design import swept_options

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, dict[str, float]] = {}
    for m, space in swept_options(spec).items():
        dists = {name: dim.distribution() for name, dim in space.items()}
        if not dists:
            continue
        trials = []
        for r, score in _ok(rows, spec, m):
            params = {}
            for name, dim in space.items():
                v = design_value(r, name, dim)
                if v is None:
                    break
                params[name] = v if dim.choices is not None else min(max(v, dim.low), dim.high)
            else:
                trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                        value=score))
        if len(trials) < MIN_TRIALS_FOR_IMPORTANCE or len({t.value for t in trials}) < 2:
            continue
        study = optuna.create_study(direction="maximize" if spec.objective.mode == "max" else "minimize")
        study.add_trials(trials)
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            out[m] = {k: float(v) for k, v in
                      optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
        except Exception:  # noqa: BLE001 - importances are a nicety; too few or degenerate trials
            continue
    return out


def importance_plot(imp: dict[str, dict[str, float]], spec: SweepSpec, path: Path) -> Path | None:
    if not imp:
        return None
    plt = _plt()
    names = list(spec.space)
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(names) * max(1, len(imp)) / 2, 3.8))
    width = 0.8 / len(imp)
    for i, (m, values) in enumerate(imp.items()):
        ax.bar(np.arange(len(names)) + i * width - 0.4 + width / 2, [values.get(n, 0.0) for n in names], width,
               label=m, color=f"C{spec.methods.index(m)}")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("importance (fANOVA)")
    ax.set_title(f"{spec.name}: Optuna parameter importances")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_plots(rows: list[dict[str, Any]], spec: SweepSpec, folder: Path) -> list[Path]:
    folder = Path(folder) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = [accuracy_by_method(rows, spec, folder / "accuracy_by_method.png"),
            accuracy_vs_options(rows, spec, folder / "accuracy_vs_options.png")]
    if spec.space:
        imp = importances(rows, spec)
        if imp:
            from rdskd_dist.files import atomic_write_json

            atomic_write_json(imp, folder / "importances.json")
        made.append(importance_plot(imp, spec, folder / "importances.png"))
    return [p for p in made if p is not None]
