"""The interface every inference engine implements, and what an engine needs to know about a model."""

from __future__ import annotations

import abc
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from star_har.errors import InvalidInputError
from star_har.files import cache_dir
from star_har.model.checkpoint import Checkpoint

# Pixel frame of the synthetic keypoints used for warm-up and export (pose models normalise
# keypoints into a person box, so any frame works).
_EXAMPLE_POSE_FRAME = (480, 640)


class EngineUnavailable(RuntimeError):
    """An engine cannot run here (library missing, no GPU); the message says what to install."""


def default_cache_dir() -> Path:
    """Where exported ONNX files and TensorRT engines are cached (see :func:`star_har.files.cache_dir`)."""
    return cache_dir("engines")


@dataclass(frozen=True)
class ModelSpec:
    """Everything an engine needs to feed a model and label its outputs, without its weights.

    input_size: (H, W) of the frames for models that read RGB, None for pose-only models.
    num_joints / num_persons: keypoints carry ``num_persons * num_joints`` joints per frame,
        person after person (:attr:`input_joints`).
    keypoint_channels: 3 (x, y, confidence) or 4 (and depth, for models with ``joint_depth``).
    """

    model_name: str
    class_names: tuple[str, ...]
    num_joints: int
    frames_per_window: int
    input_size: tuple[int, int] | None
    joint_layout: str
    window_seconds: float
    num_persons: int = 1
    keypoint_channels: int = 3

    @property
    def input_joints(self) -> int:
        return self.num_joints * self.num_persons

    @property
    def needs_frames(self) -> bool:
        return self.input_size is not None

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, input_size: tuple[int, int] | None = None) -> ModelSpec:
        """``input_size`` overrides the checkpoint's (:attr:`Checkpoint.input_size`)."""
        size = checkpoint.input_size
        if size is not None:
            size = (int(input_size[0]), int(input_size[1])) if input_size else size
            if size[0] % 16 or size[1] % 16:
                raise InvalidInputError(f"input size {size[0]}x{size[1]} must be a multiple of 16")
        return cls(model_name=checkpoint.model_name, class_names=tuple(checkpoint.class_names),
                   num_joints=int(checkpoint.hparams.get("num_joints", 13)),
                   frames_per_window=checkpoint.sampling.frames_per_window, input_size=size,
                   joint_layout=checkpoint.joint_layout, window_seconds=checkpoint.sampling.window_seconds,
                   num_persons=int(checkpoint.hparams.get("num_persons", 1)),
                   keypoint_channels=checkpoint.keypoint_channels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        raw: dict[str, Any] = json.loads(text)
        raw["class_names"] = tuple(raw["class_names"])
        raw["input_size"] = None if raw["input_size"] is None else tuple(raw["input_size"])
        return cls(**raw)

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
        """Random but well-formed inputs: frames (B, 3, T, H, W) or None, keypoints (B, T, J, C)."""
        rng = np.random.default_rng(seed)
        num_frames = self.frames_per_window
        height, width = self.input_size or _EXAMPLE_POSE_FRAME
        keypoints = rng.uniform(0.2, 0.8, (batch, num_frames, self.input_joints, self.keypoint_channels)
                                ).astype(np.float32)
        keypoints[..., 0] *= width
        keypoints[..., 1] *= height
        keypoints[..., 2] = rng.uniform(0.3, 1.0, keypoints.shape[:-1])
        keypoints[..., 3:] = (keypoints[..., 3:] - 0.5) * height / 2  # depth: within +-72 px of the person's
        frames = None
        if self.input_size is not None:
            frames = rng.standard_normal((batch, 3, num_frames, height, width), dtype=np.float32)
        return frames, keypoints

    def check_inputs(self, frames: np.ndarray | None, keypoints: np.ndarray) -> None:
        """Raise ValueError with a one-line reason when inputs do not fit this model."""
        if keypoints.ndim != 4 or keypoints.shape[2:] != (self.input_joints, self.keypoint_channels):
            raise InvalidInputError(f"keypoints must be (B, T, {self.input_joints}, {self.keypoint_channels}), "
                                    f"got {tuple(keypoints.shape)}")
        if keypoints.shape[1] % 2:
            raise InvalidInputError(f"windows need an even number of frames, got {keypoints.shape[1]}")
        if not self.needs_frames:
            return
        if frames is None:
            raise InvalidInputError(f"model {self.model_name!r} reads RGB: frames (B, 3, T, H, W) are required")
        expected = (keypoints.shape[0], 3, keypoints.shape[1], *self.input_size)
        if tuple(frames.shape) != expected:
            raise InvalidInputError(f"frames must be {expected} to match the keypoints and the model's input "
                             f"size, got {tuple(frames.shape)}")


class WindowScores(NamedTuple):
    """What an engine returns for a batch of B windows (float32 numpy arrays): ``logits`` (B, K),
    ``frame_importance`` (B, T) and ``novelty`` (B,) (see :class:`~star_har.model.ActionOutput`)."""

    logits: np.ndarray
    frame_importance: np.ndarray
    novelty: np.ndarray


#: The exported graph's output names, in the order of :class:`WindowScores`.
OUTPUT_NAMES = WindowScores._fields


class InferenceEngine(abc.ABC):
    """One way of running a model: ``infer(frames, keypoints) -> WindowScores``.

    Attributes: ``name`` (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``), ``device``
    (``"cpu"``/``"cuda"``), ``precision`` (``"fp32"``/``"fp16"``), ``spec`` (:class:`ModelSpec`),
    ``importance`` (``"model"``: the importance the model reports; ``"gradient"``: the first-order
    occlusion estimate of :class:`~star_har.model.importance.GradientImportance`).
    """

    name: str
    device: str
    precision: str = "fp32"
    importance: str = "model"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def needs_frames(self) -> bool:
        """Whether ``infer`` needs RGB frames (False for pose-only models: pass None)."""
        return self.spec.needs_frames

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) the frames must have, or None for pose-only models."""
        return self.spec.input_size

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    def infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> WindowScores:
        """Run a batch of windows.

        frames: (B, 3, T, H, W) float32 normalised RGB, or None for pose-only models.
        keypoints: (B, T, J, C) float32, x and y in pixels of the frames, confidence in [0, 1] (and
            depth when ``spec.keypoint_channels`` is 4).
        Returns logits (B, K), frame_importance (B, T) and novelty (B,) as float32 numpy arrays.
        """
        self.spec.check_inputs(frames, keypoints)
        keypoints = np.ascontiguousarray(keypoints, dtype=np.float32)
        if self.needs_frames:
            frames = np.ascontiguousarray(frames, dtype=np.float32)
        outputs = tuple(self._infer(frames if self.needs_frames else None, keypoints))
        if len(outputs) == 2:  # an ONNX file or TensorRT engine exported before the novelty output
            outputs += (np.zeros(len(keypoints), np.float32),)
        return WindowScores(*(np.asarray(value).astype(np.float32, copy=False) for value in outputs))

    @abc.abstractmethod
    def _infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> tuple[np.ndarray, ...]:
        """``infer`` after validation, on contiguous float32 arrays: the outputs the model has, in
        :data:`OUTPUT_NAMES` order (logits, importance, novelty; older exports lack the novelty)."""

    def warmup(self, iterations: int = 3, batch: int = 1) -> None:
        """Run a few windows so that lazy initialisation (allocators, autotuning, compilation)
        does not land on the first real prediction."""
        frames, keypoints = self.spec.example_inputs(batch)
        for _ in range(iterations):
            self.infer(frames, keypoints)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.spec.model_name!r}, device={self.device!r}, "
                f"precision={self.precision!r}, input_size={self.input_size})")
