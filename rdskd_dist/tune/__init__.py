"""Ray Tune sweeps of distillation runs: paired robustness designs and Optuna optimisation.

`python -m rdskd_dist.tune --spec tune/NAME.yaml` (see `__main__`). Modules by concern:
`spec` (the YAML spec model), `design` (Sobol points, pairing), `trainable` (one trial),
`ledger` (sweep folder, finished trials, Parquet), `sweep` (Tuner, resume), `report`
(statistics, tables), `plots`, `progress`. Ray is imported only by `trainable` and `sweep`.
"""

from rdskd_dist.tune.spec import Dim, SweepSpec, load_spec

__all__ = ["Dim", "SweepSpec", "load_spec"]
