"""Sweep modes, one module each: how a sweep becomes Tuner runs, and when it is complete.

A mode is an object with the `SweepMode` methods; `MODES` maps the spec's `mode` to it. The driver
(`tune/sweep.py`) asks the mode what to run now (`plan`), builds one Tuner per `TunerRun` with the
mode's `tune_arguments`, and reports with `expected_trials` and `is_complete`.
"""

from __future__ import annotations

from rdskd_dist.tune.modes.base import SweepMode, TuneArguments, TunerRun
from rdskd_dist.tune.modes.optimize import Optimize
from rdskd_dist.tune.modes.robustness import Robustness
from rdskd_dist.tune.spec import SweepSpec

MODES: dict[str, SweepMode] = {"robustness": Robustness(), "optimize": Optimize()}


def mode_of(spec: SweepSpec) -> SweepMode:
    return MODES[spec.mode]


__all__ = ["MODES", "SweepMode", "TuneArguments", "TunerRun", "mode_of"]
