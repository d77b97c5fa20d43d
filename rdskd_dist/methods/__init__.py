"""Distillation methods behind one interface (`Method`), built by name.

Every module in this package is imported here, so a method is one new file that registers its
class with `@register_method`; its options, reference settings and sweepable options travel
with it to the CLI, YAML, Tune specs and the resolve step.
"""

import importlib
import pkgutil

from rdskd_dist.methods.base import Method, MethodOptions, Terms
from rdskd_dist.methods.registry import get_method_class, list_methods, option_owners, register_method

_SHARED = {"base", "registry", "losses", "mixing"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SHARED:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Method", "MethodOptions", "Terms", "get_method_class", "list_methods", "option_owners",
           "register_method"]
