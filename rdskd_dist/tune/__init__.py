"""Ray Tune sweeps of distillation runs: paired robustness designs and Optuna optimisation.

`python -m rdskd_dist.tune --spec tune/NAME.yaml` (see `__main__`). Modules by concern:
`spec` (the YAML spec model), `space` (search-space axes, sweepable options), `score` (the
objective that ranks trials), `design` (Sobol points, pairing, a trial's config), `context` (what
every trial of a Tuner gets), `rows` (the trial row: ledger and Parquet schema), `modes/` (one
module per sweep mode), `trainable` (one trial), `callback` (ledger rows on the driver), `ledger`
(sweep folder, Parquet), `sweep` (Ray, Tuners, resume), `report` (statistics, tables), `plots`,
`progress`. Ray is imported only by `trainable`, `callback`, `sweep` and the modes' Tune arguments.
"""

from rdskd_dist.tune.spec import Dim, SweepSpec, load_spec

__all__ = ["Dim", "SweepSpec", "load_spec"]
