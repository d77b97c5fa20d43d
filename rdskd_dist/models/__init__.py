"""Networks by name: `create_model("resnet18", num_classes=10, in_channels=3)`."""

from rdskd_dist.models import gapnet, generator, lenet, resnet, wrn  # noqa: F401  (register the models)
from rdskd_dist.models.base import Classifier, Features, LogitsOnly, as_classifier
from rdskd_dist.models.registry import (
    create_model,
    create_model_from_spec,
    list_models,
    model_spec,
    register_model,
)

__all__ = ["Classifier", "Features", "LogitsOnly", "as_classifier", "create_model", "create_model_from_spec", "list_models",
           "model_spec", "register_model"]
