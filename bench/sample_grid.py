"""What a run's generator makes: 64 samples of each run's final generator (eval mode, fixed noise), ordered by the
teacher's label, as one PNG with one block per run, side by side. Looking at samples is how off-manifold
failures show (textures a teacher labels confidently), which no health number ranks.

    python bench/sample_grid.py runs/any_teacher/gn_gap_cnn_99_rdskd_long_s0 \
        runs/any_teacher/gn_gap_cnn_99_rdskd_long_win3_s0 --out docs/results/any_teacher_99_gn.png

Each run folder needs the `generator.pt` and `result.json` a run with `--output` writes; the teacher is loaded from
the file and architecture the run's config names (bare state_dicts of `bench/own_teachers.py` load as they do in
`bench/any_teacher.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # own_teachers, for teacher_arch="own_teachers:..."

from rdskd_dist.config import DistillConfig  # noqa: E402
from rdskd_dist.data.registry import input_spec  # noqa: E402
from rdskd_dist.files import safe_torch_load  # noqa: E402
from rdskd_dist.models import create_model_from_spec  # noqa: E402
from rdskd_dist.teachers import load_teacher  # noqa: E402


@torch.no_grad()
def run_samples(run_dir: Path, n: int = 64) -> torch.Tensor:
    """n samples of the run's final generator as raw pixels in [0, 1], ordered by the teacher's label."""
    cfg = DistillConfig(**json.loads((run_dir / "result.json").read_text())["config"])
    saved = safe_torch_load(run_dir / "generator.pt", "generator")
    generator = create_model_from_spec(saved["arch"])
    generator.load_state_dict(saved["state_dict"])
    generator.eval()
    spec = input_spec(cfg)
    teacher, _ = load_teacher(cfg.teacher, spec, arch=cfg.teacher_arch)
    x = generator(torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(1)))
    order = teacher(x).argmax(1).argsort(stable=True)
    mean, std = spec.normalization()
    return (x[order] * std + mean).clamp(0, 1)


def main(argv: list[str] | None = None) -> None:
    import torchvision.utils as vutils

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run folders (generator.pt + result.json)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--scale", type=int, default=2, help="pixels per sample pixel")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "generator.pt").is_file() or not (r / "result.json").is_file()]
    if missing:
        p.error(f"no generator.pt and result.json in: {', '.join(missing)}")
    blocks = [vutils.make_grid(run_samples(r), nrow=8, padding=1, pad_value=0.5) for r in args.runs]
    grid = vutils.make_grid(torch.stack(blocks), nrow=len(blocks), padding=4, pad_value=1.0)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=args.scale, mode="nearest")[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.stem}.partial.png")  # written whole, then renamed: never half a PNG
    vutils.save_image(grid, partial)
    partial.replace(args.out)
    print(f"{len(blocks)} runs -> {args.out}")


if __name__ == "__main__":
    main()
