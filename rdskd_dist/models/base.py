"""What every classifier exposes to the distillation methods."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn

from rdskd_dist.errors import UserError


class Features(NamedTuple):
    logits: torch.Tensor
    penultimate: torch.Tensor  # input of the final linear layer
    preact: torch.Tensor  # a late pre-activation feature map (activation-boundary regulariser)
    trunk: Optional[torch.Tensor] = None  # flattened conv-trunk output (DAFL's `feature`; pooled for ResNets)


class Classifier(nn.Module):
    """A classifier with `forward(x) -> logits` and `forward(x, features=True) -> Features`.

    Features go through `forward` (not a separate method) so that a DDP wrapper, which only
    hooks `forward`, still synchronises gradients when a method needs them.

    `penultimate_dim` and `preact_channels` let a method size connector layers between
    a student and a teacher of different widths.
    """

    penultimate_dim: int
    preact_channels: int
    preact_spatial: bool  # preact is a feature map (N, C, H, W) rather than a vector

    def forward_features(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, features: bool = False):
        out = self.forward_features(x)
        return out if features else out.logits

    def bn_layers(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


_CANDIDATE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                    nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.ELU,
                    nn.AdaptiveAvgPool2d, nn.Flatten)
_MAX_CANDIDATES = 30


def feature_layer_candidates(module: nn.Module) -> list[str]:
    """Names a user may pass as the teacher's feature layer: conv, linear, norm, activation and pooling modules
    (the last ones first: a late feature is what the activation regulariser wants), at most 30."""
    names = [n for n, m in module.named_modules() if n and isinstance(m, _CANDIDATE_TYPES)]
    return names[::-1][:_MAX_CANDIDATES][::-1]


class LogitsOnly(nn.Module):
    """Adapts any `nn.Module` teacher to the Features interface with forward hooks.

    - `penultimate` (and DAFL's `trunk`, flattened): the input of the last `nn.Linear` the forward pass
      calls (a forward pre-hook on every Linear; the last call wins);
    - `preact`: the output of the module named `feature_layer` (`dict(model.named_modules())`), by
      default the penultimate feature.
    A zoo `Classifier` wrapped here (to name its feature layer) keeps its own features except `preact`.
    `probe(...)` runs one dummy forward to learn the features' shapes (`penultimate_dim`,
    `preact_channels`, `preact_spatial`, `preact_shape`), which connectors between student and teacher need.
    """

    def __init__(self, module: nn.Module, feature_layer: Optional[str] = None):
        super().__init__()
        self.module = module
        self.feature_layer = feature_layer
        modules = dict(module.named_modules())
        if feature_layer is not None and (not feature_layer or feature_layer not in modules):
            raise UserError(f"teacher has no layer {feature_layer!r} (--teacher-feature-layer); valid: "
                            f"{', '.join(feature_layer_candidates(module)) or 'none'}")
        self.has_linear = any(isinstance(m, nn.Linear) for m in modules.values())
        self.probed = False

    def _features(self, x: torch.Tensor, inner_features: bool):
        """The forward pass with hooks that exist only during it (the user's module is left untouched)."""
        seen: dict[str, Any] = {}

        def linear_input(_module: nn.Module, inputs: tuple) -> None:
            if inputs and isinstance(inputs[0], torch.Tensor):
                seen["penultimate"] = inputs[0]  # the last Linear called wins

        def layer_output(_module: nn.Module, _inputs: tuple, output: Any) -> None:
            seen["preact"] = output

        handles = [] if inner_features else [m.register_forward_pre_hook(linear_input)
                                             for m in self.module.modules() if isinstance(m, nn.Linear)]
        if self.feature_layer is not None:
            handles.append(self.module.get_submodule(self.feature_layer).register_forward_hook(layer_output))
        try:
            out = self.module(x, features=True) if inner_features else self.module(x)
        finally:
            for handle in handles:
                handle.remove()
        return out, seen

    def forward(self, x: torch.Tensor, features: bool = False):
        if not features:
            return self.module(x)
        inner_features = isinstance(self.module, Classifier)
        out, seen = self._features(x, inner_features)
        preact = seen.get("preact")
        if self.feature_layer is not None and not isinstance(preact, torch.Tensor):
            raise UserError(f"teacher layer {self.feature_layer!r} did not run in the forward pass or does not "
                            f"output a tensor (got {type(preact).__name__})")
        if inner_features:
            return out._replace(preact=preact) if preact is not None else out
        logits = out.logits if hasattr(out, "logits") else out
        penultimate = seen.get("penultimate")
        trunk = penultimate.flatten(1) if penultimate is not None else None
        return Features(logits, penultimate, preact if preact is not None else penultimate, trunk)

    @torch.no_grad()
    def probe(self, channels: int, image_size: int) -> "LogitsOnly":
        """One forward of zeros (eval mode) to learn the shapes of the teacher's features (once)."""
        if self.probed:
            return self
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        was_training = self.module.training
        out = self.eval()(torch.zeros(2, channels, image_size, image_size, device=device), features=True)
        self.module.train(was_training)
        if out.penultimate is not None:
            self.penultimate_dim = out.penultimate.flatten(1).shape[1]
        if out.preact is not None:
            self.preact_shape = tuple(out.preact.shape[1:])
            self.preact_spatial = out.preact.dim() == 4
            self.preact_channels = out.preact.shape[1] if self.preact_spatial else out.preact.flatten(1).shape[1]
        self.probed = True
        return self

    def bn_layers(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def as_classifier(module: nn.Module, feature_layer: Optional[str] = None) -> nn.Module:
    """A zoo classifier as it is; anything else (or a zoo classifier with a named feature layer) wrapped."""
    if isinstance(module, LogitsOnly):
        if feature_layer is None or feature_layer == module.feature_layer:
            return module
        module = module.module
    if isinstance(module, Classifier) and feature_layer is None:
        return module
    return LogitsOnly(module, feature_layer)
