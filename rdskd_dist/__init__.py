"""rdskd-dist: data-free knowledge distillation at cluster scale."""

__version__ = "0.1.0"
