"""Where a distilled student goes wrong on the real test split: per-class accuracy and the largest confusions of
each run's student, next to its teacher's. A student far below its teacher fails either everywhere (the samples
carry little) or on a few classes (the samples miss those classes' evidence); this table tells which.

    python bench/student_confusion.py runs/any_teacher/gn_gap_cnn_99_rdskd_long_win3_s0 --name any_teacher_confusion

Each run folder needs the `student.pt` and `result.json` a run with `--output` writes; the teacher and the test
split come from the run's config (bare state_dicts of `bench/own_teachers.py` load as in `bench/any_teacher.py`).
Diagnosis only: test labels are never used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # own_teachers, for teacher_arch="own_teachers:..."

from common import write_results  # noqa: E402
from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data import load_split  # noqa: E402
from rdskd_dist.data.registry import input_spec  # noqa: E402
from rdskd_dist.files import safe_torch_load  # noqa: E402
from rdskd_dist.models import create_model_from_spec  # noqa: E402
from rdskd_dist.teachers import load_teacher  # noqa: E402


@torch.no_grad()
def confusion(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """counts[true, predicted] over the split."""
    predicted = torch.cat([model(images[i:i + 2000]).argmax(1) for i in range(0, len(images), 2000)])
    return torch.bincount(labels * classes + predicted, minlength=classes * classes).view(classes, classes)


def summary(counts: torch.Tensor, top: int = 3) -> dict:
    per_class = (counts.diag() / counts.sum(1).clamp_min(1)).tolist()
    off = counts.clone().fill_diagonal_(0)
    worst = off.flatten().topk(top)
    classes = counts.shape[0]
    return {"accuracy": counts.diag().sum().item() / counts.sum().item() * 100,
            "per_class": [100 * a for a in per_class],
            "confusions": [[int(i) // classes, int(i) % classes, int(n)] for n, i in zip(worst.values, worst.indices)]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run folders (student.pt + result.json)")
    p.add_argument("--out-dir", type=Path, default=Path("docs/results"))
    p.add_argument("--name", default="student_confusion")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "student.pt").is_file() or not (r / "result.json").is_file()]
    if missing:
        p.error(f"no student.pt and result.json in: {', '.join(missing)}")
    rows, payload = [], {}
    for run in args.runs:
        cfg = DistillConfig(**json.loads((run / "result.json").read_text())["config"])
        spec = input_spec(cfg)
        test = load_split(cfg.dataset, "test", cfg.data_root, spec=spec)
        images = test.normalized()
        teacher, _ = load_teacher(cfg.teacher, spec, arch=cfg.teacher_arch)
        saved = safe_torch_load(run / "student.pt", "student")
        student = create_model_from_spec(saved["arch"])
        student.load_state_dict(saved["state_dict"])
        student.eval()
        found = {who: summary(confusion(model, images, test.labels, spec.num_classes))
                 for who, model in (("teacher", teacher), ("student", student))}
        payload[run.name] = found
        for who, s in found.items():
            worst = ", ".join(f"{t}->{q} ({n})" for t, q, n in s["confusions"])
            rows.append(f"| {run.name} | {who} | {s['accuracy']:.2f} | "
                        + " | ".join(f"{a:.1f}" for a in s["per_class"]) + f" | {worst} |")
        print(f"{run.name}: student {found['student']['accuracy']:.2f}%, teacher {found['teacher']['accuracy']:.2f}%",
              flush=True)
    classes = len(next(iter(payload.values()))["student"]["per_class"])
    header = ("| run | model | test acc. % | " + " | ".join(f"class {c} %" for c in range(classes))
              + " | largest confusions (true->predicted, count) |\n|" + "---|" * (classes + 4))
    write_results(args.out_dir, args.name, {"runs": payload},
                  "# Where the students go wrong on the test split\n\nPer-class accuracy of each run's student and "
                  "its teacher on the real test split (diagnosis only).\n\n" + header + "\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
