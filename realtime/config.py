"""What a real-time run is configured with, importable without torch or OpenCV (the command-line
parsers read their defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from star_har.errors import InvalidInputError
from star_har.realtime import DEFAULT_CHECKPOINT

#: How the importance bars are computed (see :mod:`star_har.realtime.importance`).
IMPORTANCE_METHODS = ("auto", "model", "gradient", "occlusion")

#: Frame rate assumed for sources that do not report one (cameras, streams, image folders).
DEFAULT_FPS = 30.0


@dataclass
class PipelineConfig:
    """Everything ``star-har run`` and the GUI can set (see ``star-har run --help``).

    Times are in seconds, as a user thinks of them; :func:`hop_frames` turns them into frames of
    the stream once its frame rate is known.
    """

    source: str | int = "0"
    checkpoint: str | Path = DEFAULT_CHECKPOINT
    engine: str = "auto"
    device: str = "auto"
    fp16: bool = False
    bf16: bool = False  # bfloat16 autocast, torch engine (RGB models on a CPU with AVX-512 BF16)
    # 0.3 s: a whole number of the shipped penn-sports model's 0.15 s window steps, so pose runs on the fewest frames
    hop_seconds: float = 0.3
    threshold: float | None = None  # None: the checkpoint's calibrated open-set threshold, else 0.5
    smoothing: float = 0.5
    top_k: int = 3
    min_person_fraction: float = 0.5
    pose_model: str | Path | None = None
    num_poses: int = 1  # > 1: every person in view is tracked and recognised (realtime.people)
    max_people: int | None = None  # people recognised per step at most (the best ranked); None: all
    importance: str = "auto"  # how the bars are computed: realtime.importance.IMPORTANCE_METHODS
    pose_every_frame: bool = False
    realtime_pace: bool = False
    max_frames: int | None = None
    image_fps: float | None = None
    frame_queue_size: int = 4
    window_queue_size: int = 2

    def __post_init__(self) -> None:
        if self.importance not in IMPORTANCE_METHODS:
            raise InvalidInputError(f"importance must be one of {', '.join(IMPORTANCE_METHODS)}, "
                                    f"not {self.importance!r}")
        for name, low in (("hop_seconds", 0.0), ("image_fps", 0.0)):
            value = getattr(self, name)
            if value is not None and not value > low:
                raise InvalidInputError(f"{name} must be greater than {low:g}, got {value}")
        for name in ("top_k", "num_poses", "max_people", "max_frames", "frame_queue_size", "window_queue_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {value}")

    @classmethod
    def default(cls, name: str):
        """The default of field ``name`` (for command-line options)."""
        return next(f.default for f in fields(cls) if f.name == name)


def hop_frames(hop_seconds: float, fps: float | None) -> int:
    """Stream frames between two predictions: ``hop_seconds`` at the stream's ``fps``, at least 1."""
    return max(1, round(hop_seconds * (fps or DEFAULT_FPS)))
