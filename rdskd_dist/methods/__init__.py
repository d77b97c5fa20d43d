"""Distillation methods behind one interface (`Method`), built by name."""

from rdskd_dist.methods import dafl, dfad, dfad_ar_vi, rdskd  # noqa: F401  (register the methods)
from rdskd_dist.methods.base import Method, Terms
from rdskd_dist.methods.registry import get_method_class, list_methods, register_method

__all__ = ["Method", "Terms", "get_method_class", "list_methods", "register_method"]
