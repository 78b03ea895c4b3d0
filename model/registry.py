"""A small model registry in the style of timm: ``build_model(name, num_classes, **cfg)``."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class ActionOutput(NamedTuple):
    """What every action model returns (a NamedTuple, so it traces, compiles and exports).

    logits: (B, num_classes) unnormalised class scores.
    frame_importance: (B, T) non-negative weights summing to 1 over the window's T frames,
        how much each frame contributed to the decision (drawn as the GUI's importance bars).
    """

    logits: torch.Tensor
    frame_importance: torch.Tensor


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class/function decorator adding a model constructor to the registry under ``name``."""

    def decorator(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = constructor
        return constructor

    return decorator


def list_models() -> list[str]:
    _import_builtin_models()
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, **cfg) -> nn.Module:
    """Build a registered model, e.g. ``build_model("star", 15, modality="pose")``.

    Every model takes ``forward(frames, keypoints)`` with frames ``(B, 3, T, H, W)`` or None and
    keypoints ``(B, T, J, 3)``, and returns an :class:`ActionOutput`. Its constructor arguments
    are kept in ``model.hparams`` so that a checkpoint can rebuild it.
    """
    _import_builtin_models()
    try:
        constructor = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
    return constructor(num_classes=num_classes, **cfg)


def _import_builtin_models() -> None:
    # Imported lazily so that `model.registry` stays importable from the model modules themselves.
    from model import deformable, star  # noqa: F401
