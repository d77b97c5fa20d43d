"""The paired design: scrambled Sobol points shared by every method, and how a point becomes a config.

Robustness mode draws `num_points` points of the unit cube with scipy's scrambled Sobol sequence
(seeded by `design_seed`, one dimension per search-space entry in spec order), maps each
coordinate onto its range (log scale by default) and crosses points x seeds x methods. Every
method gets exactly the same design values and the same seeds: the comparison is paired. With
`relative` dimensions (the default) a design value is a multiplier of each method's own reference
value, so "x3 on w_ie" means three times DAFL's 5.0 for DAFL and three times RDSKD's 1.0 for RDSKD.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from rdskd_dist.config import DistillConfig
from rdskd_dist.tune.rows import option_columns
from rdskd_dist.tune.space import Dim, sweepable_options
from rdskd_dist.tune.spec import SweepSpec


def sobol_unit(num_points: int, dims: int, seed: int) -> np.ndarray:
    """`num_points` x `dims` scrambled Sobol points in [0, 1) (deterministic for a seed)."""
    if dims == 0:
        return np.zeros((num_points, 0))
    from scipy.stats import qmc

    sampler = qmc.Sobol(d=dims, scramble=True, rng=np.random.default_rng(seed))
    with warnings.catch_warnings():  # n not a power of 2 loses some balance; still a fine design
        warnings.simplefilter("ignore", UserWarning)
        return sampler.random(num_points)


def design_values(space: dict[str, Dim], unit: np.ndarray) -> dict[str, float]:
    """A point's design values (multipliers for relative dimensions) from its unit coordinates."""
    return {name: dim.value(float(u)) for (name, dim), u in zip(space.items(), unit)}


def option_values(resolved: DistillConfig) -> dict[str, Any]:
    """A resolved config's value of every option column (None for another method's options)."""
    return {name: resolved.method_options[name] if name in resolved.method_options else getattr(resolved, name, None)
            for name in option_columns()}


def reference_values(base: DistillConfig, method: str) -> dict[str, Any]:
    """The method's resolved value of every sweepable option (what a multiplier of 1 means)."""
    from rdskd_dist.data import get_spec
    from rdskd_dist.engine.resolve import resolve_config

    resolved = resolve_config(base.model_copy(update={"method": method}), get_spec(base.dataset))
    sweepable = sweepable_options()
    values = {name: getattr(resolved, name) for name in sweepable if name in DistillConfig.model_fields}
    values.update({k: v for k, v in resolved.method_options.items() if k in sweepable})
    return values


def varied_options(base: DistillConfig, method: str, space: dict[str, Dim]) -> dict[str, Dim]:
    """The dimensions that change `method`'s config: not another method's option, and not a multiplier
    of a reference of 0 (a term the method does not use)."""
    refs = reference_values(base, method)
    return {name: dim for name, dim in space.items() if name in refs and (refs[name] or not dim.relative)}


def swept_options(spec: SweepSpec) -> dict[str, dict[str, Dim]]:
    """Per method, the dimensions that change its trials' configs, judged on the method's own base (its
    `method_base` budget included)."""
    return {m: varied_options(spec.base_for(m), m, spec.space) for m in spec.methods}


def design_column(name: str, dim: Dim) -> str:
    """A dimension's column in a trial's row: its multiplier for a relative one, else the option itself."""
    return f"mult_{name}" if dim.relative else name


def apply_design(base: DistillConfig, method: str, space: dict[str, Dim], x: dict[str, float]) -> dict[str, Any]:
    """The DistillConfig overrides (absolute values) of design values `x` for `method`."""
    refs = reference_values(base, method)
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if name not in refs:  # another method's option: this method has nothing to vary
            continue
        value = x[name] * refs[name] if dim.relative else x[name]
        if sweepable_options()[name]:  # integer options
            value = max(1, int(round(value)))
        out[name] = value
    return out


def trial_config(base: DistillConfig, method: str, seed: int, space: dict[str, Dim], x: dict[str, float],
                 output=None) -> tuple[DistillConfig, dict[str, Any]]:
    """A trial's DistillConfig and the hyperparameter columns of its row (resolved values)."""
    from rdskd_dist.data import get_spec
    from rdskd_dist.engine.resolve import resolve_config

    # validated from a dict: swept values are checked against the field rules, and the method's own options
    # (ar_weight, ...) gather into method_options as they do from the CLI or YAML
    cfg = DistillConfig.model_validate({**base.model_dump(), "method": method, "seed": seed, "output": output,
                                        **apply_design(base, method, space, x)})
    resolved = resolve_config(cfg, get_spec(cfg.dataset))
    columns = option_values(resolved)
    columns.update({"budget_generator_steps": resolved.generator_steps, "budget_student_steps": resolved.student_steps,
                    "config_json": resolved.model_dump_json()})
    columns.update({f"mult_{name}": x[name] for name, dim in space.items() if dim.relative})
    return cfg, columns


@dataclass(frozen=True)
class TrialPlan:
    """One trial: a method at design values with a seed (robustness: at a design point; optimize: values
    the searcher proposed, no point)."""

    key: str
    method: str
    point: Optional[int]
    seed: int
    x: dict[str, float] = field(default_factory=dict)  # design values (multipliers when relative)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_key(method: str, point: int, seed: int) -> str:
    return f"{method}-p{point:03d}-s{seed}"


def shared_trials(spec: SweepSpec, plans: list[TrialPlan]) -> dict[str, str]:
    """Plans that would compute exactly what an earlier plan computes (the same resolved config, seed included),
    as {key: the key of that earlier plan}. A method that none of the swept options change (DFAD under
    loss-weight multipliers) has one such trial per seed, not one per point: it runs once, and its row is
    recorded at the other points (`shared_row`) instead of spending a trial on a known result."""
    first: dict[str, str] = {}
    shared: dict[str, str] = {}
    for plan in plans:
        try:
            _, columns = trial_config(spec.base_for(plan.method), plan.method, plan.seed, spec.space, plan.x)
        except Exception:  # noqa: BLE001 - an invalid point runs alone and records its own failed row
            continue
        source = first.setdefault(columns["config_json"], plan.key)
        if source != plan.key:
            shared[plan.key] = source
    return shared


def shared_row(source: dict[str, Any], plan: TrialPlan, spec: SweepSpec) -> dict[str, Any]:
    """The row of a shared plan: its source trial's outcome under the plan's own key, point and design values.
    Its timing columns stay empty (no trial ran for it) so that the sweep's time medians count real trials."""
    from rdskd_dist.tune.rows import TIMING

    row = {k: v for k, v in source.items() if k not in TIMING}
    row.update(key=plan.key, point=plan.point, seed=plan.seed, same_as=source["key"],
               **{f"mult_{name}": plan.x[name] for name, dim in spec.space.items() if dim.relative})
    return row


def robustness_design(spec: SweepSpec) -> list[TrialPlan]:
    """Methods x points x seeds, ordered point by point so that early results are already paired."""
    unit = sobol_unit(spec.num_points, len(spec.space), spec.design_seed)
    plans = []
    for point in range(spec.num_points):
        x = design_values(spec.space, unit[point])
        for seed in spec.seeds:
            for method in spec.methods:
                plans.append(TrialPlan(trial_key(method, point, seed), method, point, seed, dict(x)))
    return plans
