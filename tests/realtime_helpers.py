"""Stand-ins for the real-time tests: synthetic sources, a pose estimator without MediaPipe and
tiny random-weight checkpoints, so pipeline behaviour is tested fast and without a camera."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from star_har.model import TemporalSampling, build_model, get_layout, save_checkpoint
from star_har.realtime.capture import FrameSource, SourceError
from star_har.realtime.pose import PoseResult

CLASS_NAMES = ["clap", "jump", "squat", "wave"]


def tiny_checkpoint(path: Path, modality: str = "pose", sampling: TemporalSampling = TemporalSampling(16, 1.6),
                    seed: int = 0, novelty: bool = False, meta: dict | None = None, joint_depth: bool = False) -> Path:
    """A random-weight STAR checkpoint small enough to run in a few ms (``novelty``: with a
    novelty head fitted to random features; ``joint_depth``: reading keypoints with depth)."""
    torch.manual_seed(seed)
    extra = dict(layout="penn13", joint_features=["field", "kinematics"], joint_depth=True) if joint_depth else {}
    net = build_model("star", len(CLASS_NAMES), modality=modality, num_joints=13, dim=32, depth=1, num_heads=2,
                      novelty_head=novelty, **extra)
    if novelty:
        net.novelty_head.fit(torch.randn(200, 32), torch.arange(200) % len(CLASS_NAMES))
    save_checkpoint(path, net, model_name="star", class_names=CLASS_NAMES, joint_layout="penn13",
                    sampling=sampling, meta=meta)
    return path


class SyntheticSource(FrameSource):
    """``count`` small frames (frame i filled with value i % 256).

    live: behave like a camera. fail_after: reads before the "camera" stops delivering.
    failed_opens: how many reopen attempts fail before it comes back. delay: seconds per read.
    """

    def __init__(self, count: int, size: tuple[int, int] = (48, 64), live: bool = False,
                 fail_after: int | None = None, failed_opens: int = 0, delay: float = 0.0,
                 fps: float = 30.0) -> None:
        self.count, self.size, self.live = count, size, live
        self.fail_after, self.failed_opens, self.delay = fail_after, failed_opens, delay
        self.name = "synthetic"
        self._fps = fps
        self.reads = self.opens = 0
        self.is_open = False

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 and self.opens <= 1 + self.failed_opens:
            raise SourceError("camera 9 not found")
        self.is_open = True

    def read(self) -> np.ndarray | None:
        if not self.is_open or self.reads >= self.count:
            return None
        if self.fail_after is not None and self.reads == self.fail_after:
            self.fail_after = None  # fails once
            self.is_open = False
            return None
        if self.delay:
            time.sleep(self.delay)
        self.reads += 1
        return np.full((*self.size, 3), self.reads % 256, dtype=np.uint8)

    def close(self) -> None:
        self.is_open = False

    @property
    def fps(self) -> float | None:
        return self._fps


class FakePose:
    """A pose estimator that 'finds' a fixed standing person, except on frames listed in ``absent``."""

    model_path = Path("fake.task")

    def __init__(self, layout: str = "penn13", absent: set[int] | None = None) -> None:
        self.layout = get_layout(layout)
        self.absent = absent or set()
        self.calls = 0
        self.closed = False
        rng = np.random.default_rng(0)
        self.keypoints = np.concatenate([rng.uniform(10, 40, (self.layout.num_joints, 2)),
                                         np.ones((self.layout.num_joints, 1))], axis=1).astype(np.float32)

    def process(self, image: np.ndarray, timestamp: float) -> PoseResult:
        self.calls += 1
        if self.calls - 1 in self.absent:
            return PoseResult(np.zeros_like(self.keypoints), False, np.zeros((0, 33, 3), np.float32), None, 0.1)
        return PoseResult(self.keypoints.copy(), True, np.zeros((1, 33, 3), np.float32), 0, 0.1)

    def close(self) -> None:
        self.closed = True


class MeanPoseEngine:
    """A numpy stand-in for an inference engine: logits from the mean keypoint, uniform importance.
    Same ``infer`` contract as ``realtime.engines``; for tests about plumbing, not about models."""

    name, device, needs_frames, input_size = "mean-pose", "cpu", False, None

    def __init__(self, num_classes: int = len(CLASS_NAMES)) -> None:
        self.weights = np.random.default_rng(0).normal(size=(3, num_classes)).astype(np.float32)
        self.calls = 0

    def infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        batch, T = keypoints.shape[:2]
        logits = keypoints.mean(axis=(1, 2)) @ self.weights / 100.0
        return logits.astype(np.float32), np.full((batch, T), 1.0 / T, np.float32)
