"""One registry of networks, built by name (timm-style `create_model`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from rdskd_dist.errors import UnknownNameError, UserError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "classifier" or "generator"
    factory: Callable[..., nn.Module]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, kind: str = "classifier"):
    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, kind, factory)
        return factory

    return decorate


def list_models(kind: str | None = None) -> list[str]:
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network; the returned module remembers its spec in `.spec`."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UnknownNameError("model", name, _REGISTRY)
    try:
        model = entry.factory(**kwargs)
    except TypeError as exc:  # unexpected keyword: a user-facing spec problem
        raise UserError(f"model {name!r}: {exc}") from None
    model.spec = {"name": name, **kwargs}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The architecture spec that `create_model(**spec)` rebuilds the network from."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise UserError(f"{type(model).__name__} was not built by create_model; it has no architecture spec")
    return dict(spec)


def create_model_from_spec(spec: dict[str, Any]) -> nn.Module:
    spec = dict(spec)
    return create_model(spec.pop("name"), **spec)
