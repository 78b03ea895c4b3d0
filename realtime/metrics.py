"""Live measurements of the pipeline: rates, counters, stage timings and queue depths.

Every stage reports into one thread-safe :class:`Metrics`; the GUI and the overlay read a
:class:`MetricsSnapshot` (recent averages), the headless runner a :meth:`Metrics.summary` over
the whole run. Memory stays bounded: each timing keeps only its latest values.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

# Timings the pipeline records, in milliseconds.
TIMINGS = (
    "pose_ms",                  # MediaPipe per processed frame
    "inference_ms",             # engine call per window
    "latency_ms",               # last frame of the window captured -> prediction ready
    "window_to_prediction_ms",  # window complete (its last pose done) -> prediction ready
)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Recent state of the pipeline (timings: mean over the latest ``Metrics.recent`` values)."""

    capture_fps: float = 0.0
    processing_fps: float = 0.0
    frames_captured: int = 0
    frames_dropped: int = 0
    frames_processed: int = 0
    pose_frames: int = 0
    windows_dropped: int = 0
    windows_skipped: int = 0  # people's windows left out by the cap or the live time budget
    tracks_started: int = 0
    tracks_ended: int = 0
    predictions: int = 0
    reconnects: int = 0
    pose_ms: float = float("nan")
    inference_ms: float = float("nan")
    latency_ms: float = float("nan")
    window_to_prediction_ms: float = float("nan")
    queue_depths: dict[str, int] = field(default_factory=dict)
    source_status: str = "starting"
    message: str = ""

    def lines(self) -> list[str]:
        """Short human-readable lines (for the overlay and status bars)."""
        depths = " ".join(f"{name}:{depth}" for name, depth in self.queue_depths.items())
        lines = [f"capture {self.capture_fps:5.1f} fps  processed {self.processing_fps:5.1f} fps  "
                 f"dropped {self.frames_dropped}",
                 f"pose {self.pose_ms:5.1f} ms  model {self.inference_ms:5.1f} ms  "
                 f"latency {self.latency_ms:5.0f} ms",
                 f"queues {depths}"]
        if self.source_status != "running":
            lines.append(f"source {self.source_status}{': ' + self.message if self.message else ''}")
        return lines


class _Rate:
    """Events per second over the latest ``size`` events of the last ``horizon`` seconds; a silence
    longer than two usual gaps counts too, so the rate falls to 0 while a camera is gone instead of
    freezing at its last value."""

    def __init__(self, size: int, horizon: float = 5.0) -> None:
        self.times: deque[float] = deque(maxlen=size)
        self.horizon = horizon

    def tick(self, when: float) -> None:
        self.times.append(when)

    def value(self, now: float) -> float:
        recent = [t for t in self.times if now - t <= self.horizon]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        span = recent[-1] - recent[0]
        if now - recent[-1] > 2 * span / (len(recent) - 1):
            span = now - recent[0]
        return (len(recent) - 1) / span


class Metrics:
    """Thread-safe collector shared by all pipeline stages.

    recent: how many latest values snapshot averages cover. history: how many values per timing
    :meth:`summary` keeps (bounded so a run of hours does not grow memory).
    """

    def __init__(self, recent: int = 30, history: int = 4096) -> None:
        self.recent = recent
        self._lock = threading.Lock()
        self._timings: dict[str, deque[float]] = {name: deque(maxlen=history) for name in TIMINGS}
        self._counts = {"frames_captured": 0, "frames_dropped": 0, "frames_processed": 0,
                        "pose_frames": 0, "windows_dropped": 0, "windows_skipped": 0, "tracks_started": 0,
                        "tracks_ended": 0, "predictions": 0, "reconnects": 0}
        self._capture_rate = _Rate(recent * 2)
        self._processing_rate = _Rate(recent * 2)
        self._queues: dict[str, queue.Queue] = {}
        self._status, self._message = "starting", ""
        self.started_at = time.perf_counter()

    def watch_queue(self, name: str, q: queue.Queue) -> None:
        """Report ``q.qsize()`` as ``queue_depths[name]`` in snapshots."""
        self._queues[name] = q

    def frame_captured(self, captured_at: float) -> None:
        with self._lock:
            self._counts["frames_captured"] += 1
            self._capture_rate.tick(captured_at)

    def frame_processed(self, when: float) -> None:
        """A frame left the pose stage (with or without running pose on it)."""
        with self._lock:
            self._counts["frames_processed"] += 1
            self._processing_rate.tick(when)

    def increment(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[counter] += amount

    def record(self, timing: str, milliseconds: float) -> None:
        with self._lock:
            self._timings[timing].append(float(milliseconds))

    def set_status(self, status: str, message: str = "") -> None:
        """Source state: ``starting``, ``running``, ``reconnecting``, ``ended``, ``failed``, ``stopped``."""
        with self._lock:
            self._status, self._message = status, message

    @property
    def status(self) -> str:
        return self._status

    @property
    def source_state(self) -> tuple[str, str]:
        """``(status, message)``, read together (cheaper than a :meth:`snapshot`)."""
        with self._lock:
            return self._status, self._message

    def snapshot(self) -> MetricsSnapshot:
        now = time.perf_counter()
        with self._lock:
            means = {name: float(np.mean(list(islice(reversed(values), self.recent)))) if values
                     else float("nan") for name, values in self._timings.items()}
            return MetricsSnapshot(
                capture_fps=self._capture_rate.value(now), processing_fps=self._processing_rate.value(now),
                **self._counts, **means,
                queue_depths={name: q.qsize() for name, q in self._queues.items()},
                source_status=self._status, message=self._message)

    def summary(self) -> dict:
        """Counters plus mean / p50 / p95 / max of every timing over the kept history."""
        with self._lock:
            result: dict = dict(self._counts)
            result["elapsed_s"] = time.perf_counter() - self.started_at
            for name, values in self._timings.items():
                if values:
                    data = np.asarray(values)
                    result[name] = {"mean": float(data.mean()), "p50": float(np.percentile(data, 50)),
                                    "p95": float(np.percentile(data, 95)), "max": float(data.max()),
                                    "count": int(data.size)}
            return result
