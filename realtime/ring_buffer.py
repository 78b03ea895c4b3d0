"""The ring buffer: recent frames + poses in, model-ready windows out.

A window shows the model ``frames_per_window`` (T) frames spaced ``window_seconds / T`` apart on
the stream's clock, ending at the newest frame: the same spacing training used
(``model.TemporalSampling``), whatever the camera's frame rate. For each of the T instants the
buffer takes the frame whose timestamp is nearest. A window is emitted once the buffer holds
enough history (its first instant is not older than the oldest frame), then every ``hop``
stream frames. A finite source that ends before it spans one window still gets one window
(:meth:`RingBuffer.flush`): its frames spread over the whole clip, as training spreads a
sequence shorter than a window (:func:`train.sampling.window_at`).

Images are kept only for models that take RGB, as the working copies of :mod:`model.crop`; when
a window is cut it gets the person-centred crop training used (:func:`model.crop.person_crop`:
one box size per window, following the person along a line, resized to the model's input size,
normalised) and keypoints in the crop's pixels. Pose-only models get keypoints in the pixels of the original frame.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from star_har.errors import InvalidInputError
from star_har.model import TemporalSampling
from star_har.model.checkpoint import DEFAULT_INPUT_SIZE
from star_har.model.crop import person_crop, working_frame
from star_har.realtime.capture import Frame


class FrameRange:
    """``first_frame`` / ``last_frame`` of anything with ``frame_indices`` ``(T,)``."""

    frame_indices: np.ndarray

    @property
    def first_frame(self) -> int:
        return int(self.frame_indices[0])

    @property
    def last_frame(self) -> int:
        return int(self.frame_indices[-1])


@dataclass(frozen=True)
class Window(FrameRange):
    """T frames for the model.

    frames: ``(3, T, H, W)`` float32 RGB, the person-centred crop normalised with the Kinetics
        mean / std, or None for pose-only models.
    keypoints: ``(T, J, 3)`` float32, x, y in pixels of ``frames`` (of the captured frames when
        ``frames`` is None), confidence in [0, 1]; zeros where nobody was found (mapped into the
        crop with the other joints when ``frames`` is given).
    person_found: ``(T,)`` bool. frame_indices: ``(T,)`` stream indices (may repeat when the
        stream is slower than the window's rate). timestamps: ``(T,)`` stream seconds.
    captured_at: ``perf_counter`` when the window's last frame was captured.
    completed_at: ``perf_counter`` when the window was cut (its last pose done).
    """

    frames: np.ndarray | None
    keypoints: np.ndarray
    person_found: np.ndarray
    frame_indices: np.ndarray
    timestamps: np.ndarray
    captured_at: float
    completed_at: float

    @property
    def person_fraction(self) -> float:
        """Share of the window's frames with a person in view."""
        return float(self.person_found.mean())


@dataclass(frozen=True)
class _Entry:
    index: int
    timestamp: float
    captured_at: float
    keypoints: np.ndarray
    person_found: bool
    image: np.ndarray | None


class RingBuffer:
    """Fixed-capacity buffer of recent frames that cuts :class:`Window` s.

    sampling: the checkpoint's temporal sampling. hop: stream frames between two windows.
    needs_frames: keep images for an RGB model, cropped around the person to ``input_size`` (H, W),
    the box drawn around the ``box_joints`` (:func:`~star_har.model.crop.crop_joints`; None: all).
    capacity: entries kept; by default enough for one window at ``max_fps`` frames per second.
    """

    def __init__(self, sampling: TemporalSampling, hop: int = 9, needs_frames: bool = False,
                 input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, capacity: int | None = None,
                 max_fps: float = 120.0, box_joints: np.ndarray | None = None) -> None:
        if hop < 1:
            raise InvalidInputError(f"hop must be at least 1 frame, got {hop}")
        self.sampling, self.hop = sampling, hop
        self.needs_frames, self.input_size, self.box_joints = needs_frames, tuple(input_size), box_joints
        self.span = sampling.frame_interval * (sampling.frames_per_window - 1)
        self.capacity = capacity or max(sampling.frames_per_window, math.ceil(self.span * max_fps) + 2)
        self._entries: deque[_Entry] = deque(maxlen=self.capacity)
        self._last_emit: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._last_emit = None

    def window_due(self, frame: Frame) -> bool:
        """Whether pushing ``frame`` would end a window: the first one once the buffer spans a
        window, then one ``hop`` frames after the last."""
        if self._last_emit is None:
            return bool(self._entries) and frame.timestamp - self._entries[0].timestamp >= self.span - 1e-6
        return frame.index - self._last_emit >= self.hop

    def push(self, frame: Frame, keypoints: np.ndarray, person_found: bool, cut: bool | None = None) -> Window | None:
        """Add a frame and its ``(J, 3)`` keypoints (pixels of ``frame``); return a window when due.
        ``cut`` True / False overrides ``hop``: the caller decides which frames end windows."""
        if self._entries and not 0 < frame.timestamp - self._entries[-1].timestamp <= self.span:
            self.clear()  # the stream restarted or paused longer than a window: old frames do not fit
        keypoints = np.asarray(keypoints, dtype=np.float32)
        image = None
        if self.needs_frames:
            image, keypoints = working_frame(frame.image, keypoints, self.input_size)
        self._entries.append(_Entry(frame.index, frame.timestamp, frame.captured_at, keypoints,
                                    person_found, image))
        if self.needs_frames:
            self._release_images(frame.timestamp)
        if cut is None:
            cut = self._last_emit is None or frame.index - self._last_emit >= self.hop
        if not cut:
            return None
        positions = self.sample_positions(self._timestamps())
        if positions is None:
            return None
        self._last_emit = frame.index
        return self._cut(positions)

    def flush(self) -> Window | None:
        """The window a finite source ends with when none was cut since the last restart: the newest
        window when the buffer spans one (a person tracked since less than a hop), else the T
        instants spread evenly from the first to the last frame (frames repeat, as slow motion).
        None once a window was cut, or with fewer than two frames."""
        if self._last_emit is not None or len(self._entries) < 2:
            return None
        timestamps = self._timestamps()
        positions = self.sample_positions(timestamps)
        if positions is None:  # shorter than a window
            positions = _nearest(timestamps, np.linspace(timestamps[0], timestamps[-1], self.sampling.frames_per_window))
        self._last_emit = self._entries[-1].index
        return self._cut(positions)

    def _timestamps(self) -> np.ndarray:
        return np.fromiter((e.timestamp for e in self._entries), np.float64, len(self._entries))

    def _release_images(self, newest: float) -> None:
        """Drop the images of entries no later window can pick (an entry is nearest to an instant
        only while the next entry is later than the oldest instant), so RGB memory follows the
        window's span, not the buffer's capacity (which is sized for ``max_fps``)."""
        oldest_instant = newest - self.span
        for i in range(len(self._entries) - 1):
            if self._entries[i + 1].timestamp > oldest_instant:
                break
            if self._entries[i].image is not None:
                self._entries[i] = dataclasses.replace(self._entries[i], image=None)

    def sample_positions(self, timestamps: np.ndarray) -> np.ndarray | None:
        """Entry positions ``(T,)`` nearest to the window's instants, or None without enough history."""
        interval = self.sampling.frame_interval
        targets = timestamps[-1] - interval * np.arange(self.sampling.frames_per_window - 1, -1, -1)
        if timestamps[0] > targets[0] + 1e-6 and len(timestamps) < self.capacity:
            return None
        return _nearest(timestamps, targets)

    def _cut(self, positions: np.ndarray) -> Window:
        """The window of the entries at ``positions`` ``(T,)``."""
        picked = [self._entries[p] for p in positions]
        frames, keypoints = None, np.stack([e.keypoints for e in picked])
        if self.needs_frames:
            frames, keypoints = person_crop(np.stack([e.image for e in picked]), keypoints, self.input_size,
                                           box_joints=self.box_joints)
        return Window(
            frames=frames,
            keypoints=keypoints,
            person_found=np.array([e.person_found for e in picked]),
            frame_indices=np.array([e.index for e in picked], dtype=np.int64),
            timestamps=np.array([e.timestamp for e in picked]),
            captured_at=picked[-1].captured_at,
            completed_at=time.perf_counter())


def _nearest(timestamps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Positions ``(T,)`` of the sorted ``timestamps`` nearest to each of ``targets``."""
    if len(timestamps) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    right = np.clip(np.searchsorted(timestamps, targets), 1, len(timestamps) - 1)
    left = right - 1
    nearer_left = targets - timestamps[left] <= timestamps[right] - targets
    return np.where(nearer_left, left, right)
