"""The checkpoint format, defined in one place.

A checkpoint is a single ``torch.save`` file holding only tensors and plain Python values, so it
loads with ``torch.load(weights_only=True)`` (no pickled code runs). It carries everything the
trainer, the exporters and the real-time engine need to use the model without other files::

    {
      "format": "star-har-checkpoint", "format_version": 1,
      "model": {"name": "star", "num_classes": 15, "hparams": {...constructor arguments...}},
      "class_names": ["baseball_pitch", ...],
      "joint_layout": "penn13",
      "sampling": {"frames_per_window": 16, "window_seconds": 1.6},
      "state_dict": {...},
      "meta": {...free-form: training command, metrics, dataset, "input_size": [H, W] and "crop_region" of RGB models...},
    }
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from star_har.errors import InvalidInputError, StarHarError
from star_har.files import atomic_write
from star_har.model.registry import build_model
from star_har.model.skeleton import DEPTH_CHANNEL, get_layout

FORMAT_NAME = "star-har-checkpoint"
FORMAT_VERSION = 1
#: (H, W) of the person crops an RGB model reads when its checkpoint does not record ``meta["input_size"]``.
DEFAULT_INPUT_SIZE = (112, 112)


class CheckpointError(StarHarError):
    """A checkpoint file is missing, unreadable, or not a star-har checkpoint (one-line message)."""


@dataclass(frozen=True)
class TemporalSampling:
    """How a window is cut from a stream: ``frames_per_window`` frames spread over ``window_seconds``.

    Training draws windows the same way the real-time ring buffer presents them, so a model sees
    the same motion speed in both places.
    """

    frames_per_window: int = 16
    window_seconds: float = 16 / 30

    @property
    def frame_interval(self) -> float:
        """Seconds between two consecutive frames of a window."""
        return self.window_seconds / self.frames_per_window


@dataclass
class Checkpoint:
    model_name: str
    num_classes: int
    hparams: dict[str, Any]
    class_names: list[str]
    joint_layout: str
    sampling: TemporalSampling
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) of the RGB crops the model was trained on (``meta["input_size"]``, else
        :data:`DEFAULT_INPUT_SIZE`); None for pose-only models."""
        if self.hparams.get("modality", "rgb+pose") == "pose":
            return None
        size = self.meta.get("input_size") or DEFAULT_INPUT_SIZE
        return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))

    @property
    def joint_depth(self) -> bool:
        """Whether the model reads a depth channel in its keypoints (``(B, T, J, 4)``)."""
        return bool(self.hparams.get("joint_depth", False))

    @property
    def keypoint_channels(self) -> int:
        """Channels of the model's keypoint input: x, y, confidence (and depth)."""
        return DEPTH_CHANNEL + 1 if self.joint_depth else DEPTH_CHANNEL

    @property
    def crop_region(self) -> str:
        """Around which joints the RGB crops are cut (:data:`~star_har.model.crop.CROP_REGIONS`;
        ``meta["crop_region"]``, else the whole body)."""
        return str(self.meta.get("crop_region", "body"))

    @property
    def header(self) -> dict[str, Any]:
        """The :func:`save_checkpoint` keyword arguments that describe this network and its inputs,
        to save a changed copy: ``save_checkpoint(path, net, **ck.header, meta=...)``."""
        return {"model_name": self.model_name, "class_names": self.class_names, "joint_layout": self.joint_layout,
                "sampling": self.sampling}

    def build(self, strict: bool = True) -> nn.Module:
        """Rebuild the model and load the weights (in eval mode); :class:`CheckpointError` (one
        line) when the header names arguments the model does not take or the weights do not fit."""
        hparams = dict(self.hparams)
        if "backbone_weights" in hparams:  # the trained weights replace them: never fetch again
            hparams["backbone_weights"] = None
        try:
            net = build_model(self.model_name, self.num_classes, **hparams)
        except TypeError as exc:  # e.g. an argument this version of the model does not have
            raise CheckpointError(f"checkpoint's {self.model_name} arguments do not fit this star-har: {exc}") from None
        own = net.state_dict()
        missing = sorted(set(own) - set(self.state_dict)) if strict else []
        unexpected = sorted(set(self.state_dict) - set(own)) if strict else []
        resized = sorted(k for k, v in self.state_dict.items() if k in own and own[k].shape != v.shape)
        if missing or unexpected or resized:
            def names(keys: list[str]) -> str:
                return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

            problems = [f"{what}: {names(keys)}" for what, keys in
                        (("missing", missing), ("unexpected", unexpected), ("other shape", resized)) if keys]
            raise CheckpointError(f"the weights do not match the checkpoint's own {self.model_name} header "
                                  f"({'; '.join(problems)})")
        net.load_state_dict(self.state_dict, strict=strict)
        return net.eval()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`star_har.files.atomic_write`: a crash never leaves half a file."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


class PickledObjectsError(Exception):
    """The file holds pickled Python objects, which ``weights_only`` loading refuses (never runs)."""


def plain_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain values only.
    :class:`PickledObjectsError` when the file holds pickled Python objects; any other failure
    (truncated, corrupt) propagates as torch raised it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):  # weights_only refused pickled code: never run it
            raise PickledObjectsError(str(path)) from None
        raise


def save_checkpoint(path: str | os.PathLike, net: nn.Module, *, model_name: str,
                    class_names: list[str], joint_layout: str, sampling: TemporalSampling,
                    meta: dict[str, Any] | None = None) -> None:
    """Save ``net`` (built by ``build_model(model_name, ...)``) atomically in the checkpoint format."""
    hparams = dict(net.hparams)
    num_classes = hparams.pop("num_classes")
    if num_classes != len(class_names):
        raise InvalidInputError(f"model has {num_classes} classes but {len(class_names)} class names were given")
    get_layout(joint_layout)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_torch_save({
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": {"name": model_name, "num_classes": num_classes, "hparams": hparams},
        "class_names": list(class_names),
        "joint_layout": joint_layout,
        "sampling": {"frames_per_window": sampling.frames_per_window,
                     "window_seconds": float(sampling.window_seconds)},
        "state_dict": state,
        "meta": dict(meta or {}),
    }, path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True``); raise :class:`CheckpointError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = plain_torch_load(path)
    except PickledObjectsError:
        raise CheckpointError(f"{path} is not a star-har checkpoint (it holds pickled Python objects, "
                              "which are never loaded)") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:200]}") from None
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason[:200]}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a star-har checkpoint (no '{FORMAT_NAME}' header)")
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format v{raw['format_version']}; "
                              f"this star-har reads up to v{FORMAT_VERSION}: upgrade star-har")
    try:
        sampling = raw["sampling"]
        checkpoint = Checkpoint(
            model_name=raw["model"]["name"],
            num_classes=int(raw["model"]["num_classes"]),
            hparams=dict(raw["model"]["hparams"]),
            class_names=list(raw["class_names"]),
            joint_layout=get_layout(raw["joint_layout"]).name,
            sampling=TemporalSampling(int(sampling["frames_per_window"]),
                                      float(sampling["window_seconds"])),
            state_dict=raw["state_dict"],
            meta=dict(raw.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is an incomplete star-har checkpoint: {exc}") from None
    if len(checkpoint.class_names) != checkpoint.num_classes:
        raise CheckpointError(f"{path}: the model has {checkpoint.num_classes} outputs but "
                              f"{len(checkpoint.class_names)} class names")
    if checkpoint.sampling.frames_per_window < 1 or not checkpoint.sampling.window_seconds > 0:
        raise CheckpointError(f"{path}: invalid sampling {checkpoint.sampling} (frames_per_window >= 1 and "
                              "window_seconds > 0 needed)")
    return checkpoint
