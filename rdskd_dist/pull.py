"""`python -m rdskd_dist.pull`: download a registered student, rebuild it, optionally evaluate it.

    python -m rdskd_dist.pull models:/rdskd-digits-lenet5_half@champion --evaluate
    python -m rdskd_dist.pull models:/rdskd-mnist-lenet5_half/3 --out students/mnist --evaluate \\
        --data-root ../shared/datasets/mnist --tracking-uri http://127.0.0.1:5000

The version's files land in --out (default ./pulled/NAME-vVERSION): the MLflow model (pt2) and,
in extra_files/, `student.pt` (state_dict + architecture spec) and `result.json`. The student is
rebuilt as its own class from student.pt with a weights-only load, and the pt2 model is loaded
and checked to agree with it. `--evaluate` scores the student on the dataset's test split with the
run's own evaluation settings (precision, channels_last, batch size), so the accuracy matches the
one logged at training time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from rdskd_dist.cli import OneLineParser
from rdskd_dist.errors import UserError, cli_entrypoint
from rdskd_dist.outputs import check_writable_folder
from rdskd_dist.redact import redact


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python -m rdskd_dist.pull", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", metavar="MODEL_URI", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--out", metavar="DIR", help="download folder (default: ./pulled/NAME-vVERSION)")
    p.add_argument("--evaluate", action="store_true", help="print the student's test accuracy")
    p.add_argument("--dataset", help="dataset to evaluate on (default: the one the student was distilled for)")
    p.add_argument("--data-root", metavar="DIR", help="folder with the dataset files (else $RDSKD_DATA_ROOT)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking server or store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _find(folder: Path, name: str) -> Optional[Path]:
    hits = sorted(folder.rglob(name))
    return hits[0] if hits else None


def pull(model_uri: str, out: Optional[str] = None, tracking_uri: Optional[str] = None) -> dict[str, Any]:
    """Download and rebuild a registered student; returns a dict with the module and what was checked."""
    import torch

    from rdskd_dist.tracking.artifacts import load_student
    from rdskd_dist.tracking.client import RetryingClient
    from rdskd_dist.tracking.registry import download_version, get_version, parse_models_uri
    from rdskd_dist.tracking.uri import resolve_tracking_uri

    ref = parse_models_uri(model_uri)
    if out:
        check_writable_folder(out, "output folder")
    uri = resolve_tracking_uri(tracking_uri, existing=True)  # read-only: never creates an empty store
    client = RetryingClient(uri)
    version = get_version(client, ref)
    dst = Path(out) if out else Path("pulled") / f"{ref.name}-v{version.version}"
    folder = download_version(uri, ref, version, dst)
    student_file = _find(folder, "student.pt")
    if student_file is None:
        raise UserError(f"{model_uri} (version {version.version}) has no student.pt: not an rdskd-dist student")
    model, payload = load_student(student_file)
    result_file = _find(folder, "result.json")
    result = json.loads(result_file.read_text()) if result_file else {}

    # The pt2 (torch.export) model must load and agree with the rebuilt student.
    pt2_diff: Optional[float] = None
    if _find(folder, "MLmodel") is not None:
        import mlflow.pytorch

        from rdskd_dist.tracking.client import configure_mlflow_env

        configure_mlflow_env()
        exported = mlflow.pytorch.load_model(str(_find(folder, "MLmodel").parent))
        arch = payload["arch"]
        x = torch.randn(5, int(arch.get("in_channels", 1)), int(arch.get("image_size", 32)),
                        int(arch.get("image_size", 32)), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            pt2_diff = float((exported(x) - model(x)).abs().max())
        if pt2_diff > 1e-4:
            raise UserError(f"{model_uri}: the pt2 model and student.pt disagree (max |diff| {pt2_diff:.3g})")
    return {"model": model, "payload": payload, "result": result, "folder": folder, "version": version,
            "name": ref.name, "tracking_uri": redact(uri), "pt2_max_abs_diff": pt2_diff}


def evaluate(pulled: dict[str, Any], dataset: Optional[str], data_root: Optional[str], device_name: str) -> dict[str, Any]:
    import torch

    from rdskd_dist.data import load_split
    from rdskd_dist.engine import evaluate_accuracy, resolve_device
    from rdskd_dist.engine.precision import resolve_precision

    payload, config = pulled["payload"], pulled["result"].get("config") or {}
    dataset = dataset or payload.get("dataset") or config.get("dataset")
    if not dataset:
        raise UserError("the student does not name its dataset: pass --dataset")
    device = resolve_device(device_name)
    channels_last = bool(config.get("channels_last", False))
    precision = resolve_precision(config.get("precision", "fp32"), device)  # a run records what it used
    model = pulled["model"].to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    test = load_split(dataset, "test", data_root)
    acc = evaluate_accuracy(model, test, device, batch_size=int(config.get("eval_batch_size", 1024)),
                            precision=precision, channels_last=channels_last)
    return {"dataset": dataset, "test_accuracy": acc, "test_size": len(test), "precision": precision,
            "channels_last": channels_last, "recorded_accuracy": payload.get("test_accuracy")}


@cli_entrypoint
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    pulled = pull(args.model, args.out, args.tracking_uri)
    version, payload = pulled["version"], pulled["payload"]
    tags = version.tags or {}
    report: dict[str, Any] = {
        "model_uri": args.model, "name": pulled["name"], "version": int(version.version),
        "run_id": version.run_id, "folder": str(pulled["folder"]), "arch": payload["arch"],
        "dataset": payload.get("dataset"), "teacher_sha256": tags.get("teacher_sha256"),
        "trial_key": tags.get("rdskd.trial_key"), "pt2_max_abs_diff": pulled["pt2_max_abs_diff"],
    }
    if args.evaluate:
        report.update(evaluate(pulled, args.dataset, args.data_root, args.device))
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    arch = payload["arch"]
    print(f"pulled {args.model} = {pulled['name']} version {version.version} -> {pulled['folder']}")
    lineage = ", ".join(f"{k} {v}" for k, v in (("trial", tags.get("rdskd.trial_key")), ("run", version.run_id),
                                                 ("teacher SHA-256", (tags.get("teacher_sha256") or "")[:12]))
                        if v)
    print(f"  {lineage}")
    print(f"  student: {arch['name']} rebuilt from student.pt (weights-only load)"
          + (f"; pt2 model loads and agrees (max |diff| {pulled['pt2_max_abs_diff']:.1e})"
             if pulled["pt2_max_abs_diff"] is not None else ""))
    if args.evaluate:
        recorded = report["recorded_accuracy"]
        same = "" if recorded is None else (" = the accuracy recorded at training" if recorded == report["test_accuracy"]
                                            else f" (recorded at training: {recorded:.2f}%)")
        print(f"  test accuracy on {report['dataset']} ({report['test_size']} images, {report['precision']}): "
              f"{report['test_accuracy']:.2f}%{same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
