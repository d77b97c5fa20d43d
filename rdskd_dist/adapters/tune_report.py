"""Tune's report callback for a trial's Ray Train run, with the sweep's changes to what it forwards.

It runs in the Train controller: by default in the trial's own process (`trial.controller_in_trial`), else in a
new controller process per trial. For the latter this module imports neither torch nor the rest of the package
(`rdskd_dist.tune` imports torch): such a controller loads only what it uses (with `torch_backend.LeanTorchConfig`,
about 2 s less CPU per trial; docs/results/README.md, session 20).
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
    """`TuneReportCallback` (runs in the Train controller) with `forwarded` applied to each report.

    `direct`: the controller runs in the trial's own thread (`ray_train.driver.run_controller_here`), so each
    report goes to Tune with `ray.tune.report`, as the trial function itself would send it. Tune's callback
    instead puts reports on a queue actor that the trial process drains, one more process per trial.
    """

    def __init__(self, student_steps: int, direct: bool = False):
        if not direct:
            super().__init__()  # creates the queue actor
        self.student_steps = student_steps
        self.direct = direct

    def after_report(self, run_context, metrics, checkpoint):
        # the worker's timing marks (epoch seconds) become the row's *_s columns, not Tune/MLflow metrics
        first = {k: v for k, v in forwarded(metrics[0], self.student_steps).items() if not k.startswith("timing_")}
        if not self.direct:
            super().after_report(run_context, [first, *metrics[1:]], checkpoint)
            return
        from ray import tune
        from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

        if checkpoint:  # what Tune's callback adds: the path, the checkpoint itself is stored already
            first[CHECKPOINT_PATH_KEY] = checkpoint.path
        tune.report(first)
