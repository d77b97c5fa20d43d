"""Methods by name: one module per method, registered here (this module imports nothing of the engine)."""

from __future__ import annotations

from rdskd_dist.errors import UnknownNameError

_METHODS: dict[str, type] = {}


def register_method(cls: type) -> type:
    _METHODS[cls.name] = cls
    return cls


def get_method_class(name: str) -> type:
    if name not in _METHODS:
        raise UnknownNameError("method", name, _METHODS)
    return _METHODS[name]


def list_methods() -> list[str]:
    return sorted(_METHODS)


def option_owners() -> dict[str, list[str]]:
    """Each method option's name and the methods that declare it."""
    owners: dict[str, list[str]] = {}
    for name in list_methods():
        for option in _METHODS[name].Options.model_fields:
            owners.setdefault(option, []).append(name)
    return owners


def method_sweepable() -> dict[str, bool]:
    """Every method option that a search space may vary (name -> integer?), from the methods themselves."""
    out: dict[str, bool] = {}
    for cls in _METHODS.values():
        out.update(cls.sweepable)
    return out
