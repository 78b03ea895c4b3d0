"""A small model registry in the style of timm: ``build_model(name, num_classes, **cfg)``.

The model modules register themselves on import; ``star_har.model`` imports them, so the registry
is full as soon as the package is imported and this module imports no model (no cycle).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from star_har.errors import UnknownNameError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class ActionOutput(NamedTuple):
    """What every action model returns (a NamedTuple, so it traces, compiles and exports).

    logits: (B, num_classes) unnormalised class scores.
    frame_importance: (B, T) non-negative weights summing to 1 over the window's T frames,
        how much each frame contributed to the decision (drawn as the GUI's importance bars).
    novelty: (B,) how unlike every class seen in training the window is (squared Mahalanobis
        distance of its features, :class:`~star_har.model.openset.NoveltyHead`); 0 for a model
        without a fitted novelty head.
    """

    logits: torch.Tensor
    frame_importance: torch.Tensor
    novelty: torch.Tensor


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class/function decorator adding a model constructor to the registry under ``name``."""

    def decorator(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = constructor
        return constructor

    return decorator


def constructor_parameters(name: str) -> set[str]:
    """The keyword arguments the constructor of model ``name`` accepts (for config checks)."""
    return set(inspect.signature(model_constructor(name)).parameters)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, **cfg) -> nn.Module:
    """Build a registered model, e.g. ``build_model("star", 15, modality="pose")``.

    Every model takes ``forward(frames, keypoints)`` with frames ``(B, 3, T, H, W)`` or None and
    keypoints ``(B, T, J, 3)``, and returns an :class:`ActionOutput`. Its constructor arguments
    are kept in ``model.hparams`` so that a checkpoint can rebuild it.
    """
    return model_constructor(name)(num_classes=num_classes, **cfg)


def model_constructor(name: str) -> Callable[..., nn.Module]:
    """The constructor registered as ``name`` (its signature is what a config's ``model:`` may set)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
