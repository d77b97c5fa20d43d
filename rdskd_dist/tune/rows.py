"""One trial's row: the ledger file (JSON) and a line of results.parquet share this one schema.

Columns are derived from where their values are defined, so that a new result field, health
number or sweepable option becomes a column without an edit here:

* the run's outcome: the scalar fields of `DistillResult`;
* health on fresh generated samples: `engine.health.SCALAR_KEYS`, as `health_<name>`;
* the resolved options: every sweepable option (`tune.space.sweepable_options`) plus DESCRIPTIVE;
* design values: `mult_<name>` for each relative dimension of the spec's space.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Optional, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model

from rdskd_dist.engine.health import SCALAR_KEYS, health_from_flat, scalar_kind
from rdskd_dist.engine.result import DistillResult
from rdskd_dist.tune.space import sweepable_options

STATUSES = ("ok", "failed", "stopped")

IDENTITY: dict[str, type] = {"sweep": str, "mode": str, "key": str, "method": str, "point": int, "seed": int,
                             "status": str, "error": str}


def _scalar(hint: Any) -> Optional[type]:
    """The int/float/str/bool of a field annotation (Optional unwrapped); None for anything else."""
    args = [a for a in get_args(hint) if a is not type(None)] or [hint]
    return args[0] if len(args) == 1 and args[0] in (bool, int, float, str) else None


RESULT: dict[str, type] = {name: kind for name, hint in get_type_hints(DistillResult).items()
                           if name != "method" and (kind := _scalar(hint)) is not None}
HEALTH: dict[str, type] = {f"health_{key}": scalar_kind(key) for key in SCALAR_KEYS}
DESCRIPTIVE: dict[str, type] = {"schedule": str, "student": str, "precision": str}  # not swept, worth a column
BUDGET: dict[str, type] = {"budget_generator_steps": int, "budget_student_steps": int}
# same_as: the key of the trial whose result this row repeats (a plan with the same config, design.shared_trials)
RUN: dict[str, type] = {"trial_id": str, "attempt": str, "started_at": float, "finished_at": float,
                        "result_path": str, "checkpoint_path": str, "config_json": str, "same_as": str}
# where the trial ran (rank 0 of its Train run, or its own process) and how often it was restarted
LOCATION: dict[str, type] = {"node_id": str, "hostname": str, "nodes": str, "retries": int, "train_starts": int,
                             "resumed_from_iteration": int}
# where the trial's wall time went, seconds (trainable.timing_columns; launch_s is added by the driver)
TRIAL_TIMING = ("startup_s", "setup_s", "train_s", "eval_s", "finish_s", "trial_wall_s", "overhead_frac",
                "train_cpu_s")
TIMING: dict[str, type] = {name: float for name in ("launch_s", *TRIAL_TIMING)}


def option_columns() -> dict[str, type]:
    """The resolved options every row records (method options are None for the methods without them)."""
    return {**{name: int if integer else float for name, integer in sweepable_options().items()}, **DESCRIPTIVE}


def columns(design: Iterable[str] = ()) -> dict[str, type]:
    """Every column of results.parquet, in order; `design` names the relative dimensions (mult_<name>)."""
    return {**IDENTITY, **RESULT, **HEALTH, **option_columns(), **BUDGET,
            **{f"mult_{name}": float for name in design}, **RUN, **LOCATION, **TIMING}


def score_columns() -> dict[str, type]:
    """Columns a sweep may be scored by: the numeric outcome and health numbers a trial reports."""
    return {name: kind for name, kind in {**RESULT, **HEALTH}.items() if kind in (int, float)}


class _RowBase(BaseModel):
    # options and design values ride along as extra columns (their set depends on the registry and spec)
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


TrialRow = create_model("TrialRow", __base__=_RowBase, __doc__="A trial's row, typed by `columns()`.",
                        **{name: (Optional[kind], None) for name, kind in
                           {**IDENTITY, **RESULT, **HEALTH, **BUDGET, **RUN, **LOCATION, **TIMING}.items()
                           if name != "status"},
                        status=(Literal[STATUSES], ...))


def checked_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` checked and converted to the row's column types (a ValidationError names a bad column)."""
    return TrialRow.model_validate(dict(values)).model_dump(exclude_unset=True)


def outcome_columns(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The result and health columns of a finished run's final metrics: a `DistillResult.to_dict()` (health
    nested) or a Ray Train report (health flat, as `health/<name>`)."""
    health = metrics.get("health")
    health = health if isinstance(health, Mapping) else health_from_flat(dict(metrics))
    # a result field that is also an option column (precision: `auto` resolved on the worker) replaces the option's
    # value only where the run reported it
    out = {name: metrics.get(name) for name in RESULT if name not in DESCRIPTIVE or metrics.get(name) is not None}
    for key in SCALAR_KEYS:
        value = health.get(key)
        out[f"health_{key}"] = bool(value) if scalar_kind(key) is bool and value is not None else value
    return out


def parquet_schema(design: Iterable[str] = ()):
    import pyarrow as pa

    arrow = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    return pa.schema([(name, arrow[kind]) for name, kind in columns(design).items()])


def parquet_value(value: Any, kind: type) -> Any:
    """A ledger value as its column's type (rows of older sweeps may hold ints where floats are due)."""
    return None if value is None else kind(value)
