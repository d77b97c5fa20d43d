"""Time-to-accuracy plot from the JSON files that bench/mnist_fast.py writes.

    python bench/plot_curves.py docs/results/mnist_fast.json docs/results/mnist_fast_probe.json \
        --out docs/results/mnist_time_to_accuracy.png [--configs rdskd_fast dafl_fast]

One line per (configuration, seed): monitoring evaluations of the student's test accuracy against the
engine's training time. Monitoring only; the reported figures are the end-of-budget accuracies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/results/mnist_time_to_accuracy.png"))
    p.add_argument("--configs", nargs="+", help="plot only these configurations (default: every one in the files)")
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(8, 5))
    colours: dict[str, str] = {}
    for path in args.results:
        data = json.loads(path.read_text())
        for run in data["runs"]:
            if not run.get("curve") or (args.configs and run["config"] not in args.configs):
                continue
            name = run["config"]
            colour = colours.setdefault(name, f"C{len(colours) % 10}")
            t = [c[0] / 60 for c in run["curve"]] + [run["train_time_s"] / 60]
            acc = [c[2] for c in run["curve"]] + [run["student_accuracy"]]
            ax.plot(t, acc, color=colour, alpha=0.8, label=name if name not in ax.get_legend_handles_labels()[1] else None)
    for level in (98.0, 98.5):
        ax.axhline(level, color="grey", lw=0.8, ls="--")
    ax.set_ylim(90, 100)
    ax.set_xlabel("training time (minutes, 2-core CPU)")
    ax.set_ylabel("student test accuracy (%), monitoring")
    ax.set_title("MNIST LeNet-5 -> LeNet-5-half, data-free: time to accuracy")
    ax.legend(loc="lower right", fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
