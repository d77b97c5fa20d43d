"""Tune's report callback for a trial's Ray Train run, with the sweep's changes to what it forwards.

It runs in the Train controller, a new process per trial, so this module imports neither torch nor the rest of
the package (`rdskd_dist.tune` imports torch): the controller loads only what it uses (with
`torch_backend.LeanTorchConfig`, about 2 s less CPU per trial; docs/results/README.md, session 20).
"""

from __future__ import annotations

from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback


def forwarded(metrics: dict[str, Any], student_steps: int) -> dict[str, Any]:
    """A Train report as Tune should see it: `done` renamed, `student_progress` added."""
    out = dict(metrics)
    if "done" in out:
        out["train_done"] = out.pop("done")
        out["student_progress"] = 1.0
    elif "s_step" in out:
        out["student_progress"] = float(out["s_step"]) / max(student_steps, 1)
    return out


class SweepReportCallback(TuneReportCallback):
    """`TuneReportCallback` (runs in the Train controller) with `forwarded` applied to each report."""

    def __init__(self, student_steps: int):
        super().__init__()
        self.student_steps = student_steps

    def after_report(self, run_context, metrics, checkpoint):
        # the worker's timing marks (epoch seconds) become the row's *_s columns, not Tune/MLflow metrics
        first = {k: v for k, v in forwarded(metrics[0], self.student_steps).items() if not k.startswith("timing_")}
        metrics = [first, *metrics[1:]]
        super().after_report(run_context, metrics, checkpoint)
