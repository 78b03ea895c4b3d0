"""Runs a :class:`~realtime.pipeline.Pipeline` for the GUI without ever blocking the UI thread.

Loading (checkpoint, engine warm-up, MediaPipe) happens on a loader thread; the pipeline's own
threads call back into small bounded buffers (the newest frame only, the latest predictions);
a QTimer on the UI thread drains them and emits Qt signals. Nothing grows while it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from star_har.realtime.capture import FrameSource, SourceError, open_source
from star_har.realtime.config import hop_frames
from star_har.realtime.gui.widgets import ThumbnailCache
from star_har.realtime.metrics import MetricsSnapshot
from star_har.realtime.pipeline import FrameUpdate, Pipeline, PipelineConfig
from star_har.realtime.postprocess import Prediction
from star_har.realtime.recorder import VideoRecorder

log = logging.getLogger(__name__)

PipelineFactory = Callable[..., Pipeline]


class PausableSource(FrameSource):
    """Wraps a source so that ``read`` waits while paused (and gives up once closing)."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.live, self.name = inner.live, inner.name
        self.running = threading.Event()
        self.running.set()
        self.closing = threading.Event()

    def open(self) -> None:
        self.inner.open()

    def read(self) -> np.ndarray | None:
        while not self.running.is_set():
            if self.closing.wait(0.05):
                return None
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()

    @property
    def fps(self) -> float | None:
        return self.inner.fps


def default_factory(config: PipelineConfig, **kwargs) -> Pipeline:
    return Pipeline(config, **kwargs)


class PipelineController(QObject):
    """Start / pause / stop a pipeline and record its annotated stream, from the UI thread.

    factory: builds the pipeline as ``factory(config, source=..., on_frame=..., on_prediction=...)``
    (tests pass one with a fake pose estimator). Signals are emitted on the UI thread.
    """

    frame_ready = pyqtSignal(object)        # FrameUpdate (the newest; older ones are skipped)
    prediction_ready = pyqtSignal(object)   # Prediction (every one)
    started = pyqtSignal(dict)              # Pipeline.describe()
    finished = pyqtSignal(str)              # "" when the source ended or was stopped, else the error
    #                                         (failed_stage says which part failed)
    state_changed = pyqtSignal(str)         # idle, loading, running, paused
    recording_changed = pyqtSignal(str)     # path being written, "" when not recording
    source_status = pyqtSignal(str, str)    # status (running, reconnecting, ...), message
    metrics_ready = pyqtSignal(object)      # MetricsSnapshot, also while no frame arrives
    recording_failed = pyqtSignal(str)      # why the recording stopped (one line); the file is finished

    def __init__(self, factory: PipelineFactory = default_factory, poll_ms: int = 15,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.factory = factory
        self.pipeline: Pipeline | None = None
        self.source: PausableSource | None = None
        self.thumbnails = ThumbnailCache()
        self.state = "idle"
        self._lock = threading.Lock()
        self._latest: FrameUpdate | None = None
        self._predictions: deque[Prediction] = deque(maxlen=64)
        self._loader: threading.Thread | None = None
        self._loaded: tuple[Pipeline | None, str] | None = None
        self._recorder: VideoRecorder | None = None
        self._closers: list[threading.Thread] = []
        self._cancel = threading.Event()
        self._source_status: tuple[str, str] = ("", "")
        self._metrics_at = 0.0
        #: what the last failure was about: "source", "model" (checkpoint, engine, pose model) or "run"
        self.failed_stage = ""
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self._poll)

    # -- control (UI thread) ---------------------------------------------------------------------
    def start(self, config: PipelineConfig) -> None:
        """Load and start ``config`` in the background (stops what runs first)."""
        self.stop(wait=True)
        self._cancel.clear()
        self._loaded = None
        self.thumbnails.clear()
        self._set_state("loading")
        self._loader = threading.Thread(target=self._load, args=(config,), name="star-har-gui-loader",
                                        daemon=True)
        self._loader.start()
        self.timer.start()

    def set_paused(self, paused: bool) -> None:
        if self.source is None or self.state not in ("running", "paused"):
            return
        (self.source.running.clear if paused else self.source.running.set)()
        self._set_state("paused" if paused else "running")

    def stop(self, wait: bool = False) -> None:
        """Stop the pipeline (and loading); ``wait``: also join every thread before returning."""
        self._cancel.set()
        self.stop_recording()
        if self.source is not None:
            self.source.closing.set()
            self.source.running.set()
        if self.pipeline is not None:
            self.pipeline.stop()
        if wait:
            self.join()

    def shutdown(self) -> None:
        """Stop everything without blocking the UI thread (the window is closing): a running
        pipeline stops within a frame and is joined, a recording is finished, but a loader busy
        in a library call is not waited for: it closes what it loaded itself (see :meth:`_load`)."""
        self.stop()
        if self._loader is not None and self._loader.is_alive():
            self._loader = None  # not joined: it sees the cancel and closes what it loads
        self.join()

    def wait_for_threads(self, timeout: float = 60.0) -> None:
        """Before the process exits: let a loader still running finish and close what it loaded
        (an interpreter exiting under a thread inside MediaPipe or torch can abort)."""
        for thread in threading.enumerate():
            if thread.name == "star-har-gui-loader":
                thread.join(timeout)

    def join(self, timeout: float = 10.0) -> None:
        """Join the loader, the pipeline's threads and any recorder still finishing its file."""
        if self._loader is not None:
            self._loader.join(timeout)
            if self._loaded is not None and self._loaded[0] is not None and self.pipeline is None:
                self._loaded[0].pose.close()  # loaded after the cancel: never started, only close
            self._loader = None
        if self.pipeline is not None:
            self.pipeline.join(timeout)
            self.pipeline = None
        for closer in self._closers:
            closer.join(timeout)
        self._closers.clear()
        self.source = None
        self.timer.stop()
        self._set_state("idle")

    def threads(self) -> list[threading.Thread]:
        """Every thread this controller started that may still be alive (for tests and shutdown)."""
        threads = [t for t in (self._loader, self._recorder) if t is not None] + list(self._closers)
        if self.pipeline is not None:
            threads += self.pipeline._threads
        return threads

    def update_settings(self, hop_seconds: float | None = None, threshold: float | None = None) -> None:
        """Change the time between predictions / the confidence threshold of the running pipeline."""
        if self.pipeline is None:
            return
        if hop_seconds is not None:
            self.pipeline.hop = self.pipeline.ring.hop = hop_frames(hop_seconds, self.pipeline.source.fps)
            self.pipeline.config = replace(self.pipeline.config, hop_seconds=hop_seconds)
        if threshold is not None:
            self.pipeline.postprocess.threshold = float(threshold)

    # -- recording -------------------------------------------------------------------------------
    def start_recording(self, path: str | Path) -> None:
        """Write the annotated stream (the overlay of :mod:`realtime.overlay`) to ``path``."""
        if self.pipeline is None:
            raise RuntimeError("start a source before recording")
        self.stop_recording()
        recorder = VideoRecorder(Path(path), self.pipeline.source.fps or 30.0, self.pipeline.layout,
                                     live=True)  # never slow the pipeline down for the recording
        recorder.start()
        self._recorder = recorder
        self.recording_changed.emit(str(path))

    def stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        closer = threading.Thread(target=recorder.close, name="star-har-gui-recorder-close", daemon=True)
        closer.start()  # finishing the file takes a moment: not on the UI thread
        self._closers.append(closer)
        self.recording_changed.emit("")

    @property
    def recording(self) -> bool:
        return self._recorder is not None

    # -- pipeline threads ------------------------------------------------------------------------
    def _load(self, config: PipelineConfig) -> None:
        stage = "source"
        try:
            source = PausableSource(open_source(config.source, config.image_fps))
            stage = "model"
            pipeline = self.factory(config, source=source, on_frame=self._on_frame,
                                    on_prediction=self._on_prediction)
        except Exception as exc:  # shown in the window; the traceback goes to the log
            log.debug("loading failed", exc_info=True)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._loaded = (None, message, "source" if isinstance(exc, SourceError) else stage)
            return
        self._loaded = (pipeline, "", "")
        if self._cancel.is_set():  # closed or restarted while loading: nobody will start it
            pipeline.join()  # never started: closes its pose model (closing twice is harmless)

    def _on_frame(self, update: FrameUpdate) -> None:
        if update.pose_fresh:
            self.thumbnails.add(update.frame.index, update.frame.image,
                                update.keypoints if update.person_found else None)
        recorder = self._recorder
        if recorder is not None:
            recorder.put(update)
        with self._lock:
            self._latest = update

    def _on_prediction(self, prediction: Prediction) -> None:
        with self._lock:
            self._predictions.append(prediction)

    # -- UI thread -------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def _poll(self) -> None:
        if self.state == "loading" and self._loaded is not None and not self._cancel.is_set():
            self._start_loaded()
        with self._lock:
            update, self._latest = self._latest, None
            predictions = list(self._predictions)
            self._predictions.clear()
        for prediction in predictions:
            self.prediction_ready.emit(prediction)
        if update is not None:
            self.frame_ready.emit(update)
        if self.pipeline is not None:
            self._report_metrics()
        if self._recorder is not None and self._recorder.error:  # e.g. the disk is almost full
            error = self._recorder.error
            self.stop_recording()
            self.recording_failed.emit(error)
        if self.pipeline is not None and not self.pipeline.running:
            error = self.pipeline.error or ""
            self.failed_stage = ("source" if error and error == self.pipeline.capture_error
                                 else "run" if error else "")
            self.stop(wait=True)
            self.finished.emit(error)

    def _report_metrics(self) -> None:
        """Source state and rates, also while no frame arrives (a lost camera delivers none)."""
        status = self.pipeline.metrics.source_state  # every poll; the whole snapshot twice a second
        if status != self._source_status:  # the message counts down while reconnecting
            self._source_status = status
            self.source_status.emit(*status)
        now = time.perf_counter()
        if now - self._metrics_at >= 0.5:
            self._metrics_at = now
            snapshot: MetricsSnapshot = self.pipeline.metrics.snapshot()
            self.metrics_ready.emit(snapshot)

    def _start_loaded(self) -> None:
        pipeline, error, self.failed_stage = self._loaded
        self._loader.join()
        self._loader = None
        if pipeline is None:
            self.timer.stop()
            self._set_state("idle")
            self.finished.emit(error)
            return
        self.pipeline, self.source = pipeline, pipeline.source
        self._source_status = ("", "")
        pipeline.start()
        self._set_state("running")
        self.started.emit(pipeline.describe())
