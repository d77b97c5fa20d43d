"""The one resolve step: fill a config from the method's reference settings and the dataset.

Precedence for every option left as None: the method's reference value for the dataset (or for
the dataset it stands in for, e.g. digits -> mnist), then the dataset's own default (student,
latent size), then the engine's fallback below. Method options the user did not give take the
method's `Options` defaults. `describe_sources` says where each resolved value came from.
"""

from __future__ import annotations

from typing import Any

from rdskd_dist.config import DistillConfig
from rdskd_dist.data import DatasetSpec
from rdskd_dist.engine.schedules import schedule_steps
from rdskd_dist.errors import UserError
from rdskd_dist.methods import get_method_class

# Used only where neither the method nor the dataset says anything.
ENGINE_FALLBACKS: dict[str, Any] = {
    "schedule": "two_stage", "student_steps_per_generator_step": 5, "lr_generator": 1e-3,
    "student_optimizer": "adam", "lr_student": 2e-3, "momentum": 0.9, "weight_decay": 0.0,
    "lr_decay_at": [], "generator_lr_decay_at": [], "temperature": 1.0, "generator_inner_bn_eps": 1e-5,
    "w_oh": 0.0, "w_ie": 0.0, "w_ds": 0.0, "w_a": 0.0,
}


def reference_dataset(spec: DatasetSpec) -> str:
    return spec.reference_dataset or spec.name


def _dataset_defaults(spec: DatasetSpec) -> dict[str, Any]:
    return {"student": spec.student_arch, "latent_dim": spec.latent_dim}


def _resolve(cfg: DistillConfig, spec: DatasetSpec) -> tuple[dict[str, Any], dict[str, str]]:
    method = get_method_class(cfg.method)
    ref_name = reference_dataset(spec)
    layers = [(f"reference {method.name}/{ref_name}", method.reference(ref_name)),
              (f"dataset {spec.name}", _dataset_defaults(spec)),
              ("engine fallback", ENGINE_FALLBACKS)]
    filled: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in DistillConfig.model_fields:
        if name == "method_options":
            continue
        if name in cfg.model_fields_set and getattr(cfg, name) is not None:
            sources[name] = "given"
            continue
        if getattr(cfg, name) is None:
            for label, values in layers:
                if name in values:
                    filled[name], sources[name] = values[name], label
                    break
        else:
            sources[name] = "default"
    options = method.Options(**cfg.method_options)
    filled["method_options"] = options.model_dump()
    for name in method.Options.model_fields:
        sources[name] = "given" if name in cfg.method_options else f"{method.name} default"
    return filled, sources


def resolve_config(cfg: DistillConfig, spec: DatasetSpec) -> DistillConfig:
    """A copy of `cfg` with every option filled (what `result.json` and checkpoints record)."""
    filled, _ = _resolve(cfg, spec)
    resolved = cfg.model_copy(update=filled)
    for name in ("generators", "pool_snapshots"):
        if getattr(resolved, name) > 1 and resolved.schedule != "two_stage":
            raise UserError(f"{name} > 1 needs the two_stage schedule; {cfg.method} uses {resolved.schedule}")
    schedule_steps(resolved)  # a budget the schedule cannot split fails here, before any work
    return resolved


def describe_sources(cfg: DistillConfig, spec: DatasetSpec,
                     given: dict[str, str] | None = None) -> list[tuple[str, Any, str]]:
    """(option, resolved value, source) rows. `given` names where given options came from
    (e.g. "command line", "config.yaml:3"); without it they say "given"."""
    resolved = resolve_config(cfg, spec)
    _, sources = _resolve(cfg, spec)
    given = given or {}
    rows = []
    values = {**{k: getattr(resolved, k) for k in DistillConfig.model_fields if k != "method_options"},
              **resolved.method_options}
    for name, value in values.items():
        source = sources.get(name, "default")
        if source == "given":
            source = given.get(name, "given")
        rows.append((name, value, source))
    return rows
