"""Methods by name: one module per method, registered here."""

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
