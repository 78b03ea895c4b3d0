"""The real-time pipeline: capture -> pose -> ring buffer -> inference -> predictions.

Three threads joined by bounded queues::

    CaptureThread --frames--> pose thread (PoseEstimator + RingBuffer) --windows--> inference thread
                                   |                                                    |
                              on_frame(FrameUpdate)                      on_prediction(Prediction)

Usage (the GUI and ``star-har run`` both drive it this way)::

    pipeline = Pipeline(PipelineConfig(source="0", checkpoint="assets/star_pose_penn.pt"),
                        on_frame=show, on_prediction=log_it)
    pipeline.start()
    pipeline.wait()          # until the source ends (or pipeline.stop() from anywhere)
    pipeline.join()          # threads finished, pose model closed
    if pipeline.error: ...   # a stage failed (the message is one line)

Callbacks run on the pipeline's threads: keep them short (a GUI emits a Qt signal; the headless
runner hands frames to its writer thread). ``on_frame`` is called for every frame leaving the
pose stage, ``on_prediction`` for every window. Between callbacks, :attr:`Pipeline.latest_update`,
:attr:`Pipeline.latest_prediction` and ``Pipeline.metrics.snapshot()`` can be polled.

Live sources never wait: stale frames and windows are dropped (and counted). Files deliver every
frame and every window, so a file always gives the same predictions.

With ``num_poses`` > 1 every person in view is tracked and recognised: the pose thread hands the
people to a :class:`~realtime.people.PeopleStage` (one ring buffer per person) instead of the ring
buffer, and the inference thread runs each step's windows of all people in one engine call.

MediaPipe is the expensive stage, so by default it runs only on the frames a window can use
(see :class:`PoseSchedule`): one per ``sampling.frame_interval`` of stream time plus every frame
that ends a window (the frames in between are shown with the latest pose,
``FrameUpdate.pose_fresh`` False). ``pose_every_frame=True`` runs it on all frames.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star_har.errors import InvalidInputError, StarHarError
from star_har.model import Checkpoint, load_checkpoint
from star_har.model.checkpoint import DEFAULT_INPUT_SIZE
from star_har.model.crop import crop_joints
from star_har.model.openset import OpenSet
from star_har.realtime import DEFAULT_CHECKPOINT
from star_har.realtime.capture import CaptureThread, Frame, FrameSource, open_source
from star_har.realtime.config import PipelineConfig, hop_frames
from star_har.realtime.importance import OcclusionImportance, importance_source, resolve_importance
from star_har.realtime.metrics import Metrics, MetricsSnapshot
from star_har.realtime.people import PeopleStage, PeopleStep, Person
from star_har.realtime.pose import PoseEstimator
from star_har.realtime.postprocess import PostProcessor, Prediction
from star_har.realtime.queues import get_until_stopped, put_blocking, put_latest
from star_har.realtime.ring_buffer import RingBuffer, Window

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FrameUpdate:
    """One frame after the pose stage, for display.

    keypoints: ``(J, 3)`` the main person in ``Pipeline.layout`` (pixels of ``frame.image``; ``(J, 4)``
        with depth for a model with ``joint_depth``),
        from this frame when ``pose_fresh``, else from the latest frame pose ran on.
    prediction: the latest prediction (None before the first window).
    people: multi-person runs (``num_poses`` > 1): everybody tracked, each with their latest
        prediction; None otherwise.
    """

    frame: Frame
    keypoints: np.ndarray
    person_found: bool
    pose_fresh: bool
    prediction: Prediction | None
    metrics: MetricsSnapshot
    people: tuple[Person, ...] | None = None


class PoseSchedule:
    """Which frames MediaPipe runs on: the frame nearest to each point of a grid with the window's
    ``interval``, anchored at the frame that ended the last window, plus every frame that ends a
    window.

    Anchoring the grid at window ends means that when ``hop`` spans a whole number of intervals
    (9 frames at 30 fps for 0.1 s intervals) every window instant falls on a frame pose ran on.
    A step longer than the interval (a camera outage) starts a new grid at the frame after it.
    """

    def __init__(self, interval: float, every_frame: bool = False) -> None:
        self.interval, self.every_frame = interval, every_frame
        self._next: float | None = None  # the next grid point (stream seconds)
        self._previous: float | None = None

    def due(self, frame: Frame, ends_window: bool) -> bool:
        now = frame.timestamp
        step = None if self._previous is None else now - self._previous
        if step is None or not 0 <= step <= self.interval:  # start, restart or a gap: a new grid from here
            self._next, step = now, 0.0
        # this frame is the nearest to the grid point when the next one would be further from it
        half_step = step / 2
        self._previous = now
        on_grid = now + half_step >= self._next - 1e-9
        if on_grid:
            while self._next <= now + half_step + 1e-9:
                self._next += self.interval
        return self.every_frame or ends_window or on_grid

    def window_ended(self, frame: Frame) -> None:
        self._next = frame.timestamp + self.interval


class Pipeline:
    """The running pipeline (see the module doc). Construction loads the checkpoint, the engine
    and the pose model and checks the source opens, so mistakes surface before :meth:`start`.

    engine / pose / source: ready-made stages (tests, the GUI reusing a loaded engine); by
    default built from ``config``.
    """

    def __init__(self, config: PipelineConfig, *, engine=None, pose: PoseEstimator | None = None,
                 source: FrameSource | None = None, checkpoint: Checkpoint | None = None,
                 on_frame: Callable[[FrameUpdate], None] | None = None,
                 on_prediction: Callable[[Prediction], None] | None = None) -> None:
        self.config = config
        self.checkpoint = checkpoint or load_checkpoint(config.checkpoint)
        self.class_names = list(self.checkpoint.class_names)
        self.layout = self.checkpoint.joint_layout
        self.sampling = self.checkpoint.sampling
        self.source = source or open_source(config.source, config.image_fps)
        self.pose = pose or PoseEstimator(config.pose_model, self.layout, config.num_poses,
                                          depth=self.checkpoint.joint_depth)
        if engine is None:
            try:
                engine = self._create_engine()
            except BaseException:
                self.pose.close()
                raise
        self.importance = resolve_importance(config.importance, getattr(engine, "device", "cpu"))
        if self.importance == "gradient" and getattr(engine, "importance", "model") != "gradient":
            self.pose.close()
            raise InvalidInputError("importance 'gradient' needs an engine built with it "
                                    "(create_engine(..., gradient_importance=True))")
        self.engine = engine if self.importance == "model" else OcclusionImportance(engine)
        self.on_frame, self.on_prediction = on_frame, on_prediction

        self.metrics = Metrics()
        self.frames: queue.Queue = queue.Queue(maxsize=config.frame_queue_size)
        self.windows: queue.Queue = queue.Queue(maxsize=config.window_queue_size)
        self.metrics.watch_queue("frames", self.frames)
        self.metrics.watch_queue("windows", self.windows)
        self.hop = hop_frames(config.hop_seconds, self.source.fps)
        self.ring = RingBuffer(self.sampling, self.hop, needs_frames=bool(engine.needs_frames),
                               input_size=engine.input_size or DEFAULT_INPUT_SIZE,
                               box_joints=crop_joints(self.checkpoint.crop_region, self.layout))
        self.postprocess = PostProcessor(self.class_names, config.threshold, config.smoothing,
                                         config.top_k, config.min_person_fraction,
                                         open_set=OpenSet.from_meta(self.checkpoint.meta))
        # one copy of the ring buffer and the post-processor per tracked person
        self.people = (PeopleStage(self.ring, self.postprocess, self.layout, self.metrics, config.max_people,
                                   live=self.source.live) if config.num_poses > 1 else None)
        self.latest_prediction: Prediction | None = None
        self.latest_update: FrameUpdate | None = None
        self.error: str | None = None

        self._stop = threading.Event()
        self._capture = CaptureThread(self.source, self.frames, self.metrics, pace=config.realtime_pace,
                                      max_frames=config.max_frames)
        self._threads = [self._capture,
                         threading.Thread(target=self._guard, args=(self._pose_loop,), name="star-har-pose",
                                          daemon=True),
                         threading.Thread(target=self._guard, args=(self._inference_loop,),
                                          name="star-har-inference", daemon=True)]

    def _create_engine(self):
        from star_har.realtime.engines import create_engine

        engine = create_engine(self.checkpoint, engine=self.config.engine, device=self.config.device,
                               fp16=self.config.fp16, bf16=self.config.bf16,
                               gradient_importance=self.config.importance == "gradient")
        engine.warmup()  # lazy initialisation must not land on the first window
        return engine

    def describe(self) -> dict:
        """What is running (source, model, engine, sampling), for logs and the GUI's status bar."""
        return {"source": self.source.name, "live": self.source.live,
                "checkpoint": str(self.config.checkpoint), "model": self.checkpoint.model_name,
                "modality": self.checkpoint.hparams.get("modality"), "classes": self.class_names,
                "joint_layout": self.layout, "frames_per_window": self.sampling.frames_per_window,
                "window_seconds": self.sampling.window_seconds, "hop": self.hop,
                "engine": getattr(self.engine, "name", type(self.engine).__name__),
                "device": getattr(self.engine, "device", "cpu"), "pose_model": str(self.pose.model_path),
                "importance": importance_source(self.importance, self.checkpoint.hparams)}

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Ask every stage to finish now (safe from any thread, also from callbacks)."""
        self._stop.set()
        self._capture.stop()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the last stage finished (True) or ``timeout`` seconds passed (False)."""
        self._threads[-1].join(timeout)
        return not self._threads[-1].is_alive()

    def join(self, timeout: float = 10.0) -> None:
        """Stop and wait for all threads (at most ``timeout`` s each)."""
        self.stop()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout)
        if self._threads[1].ident is None:  # never started: the pose thread did not close it
            self.pose.close()
        self.error = self.error or self._capture.error

    @property
    def capture_error(self) -> str | None:
        """Why the source failed for good (None while it works or when it simply ended)."""
        return self._capture.error

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.join()

    # -- stages ----------------------------------------------------------------------------------
    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as exc:  # a failing stage stops the whole pipeline, with its reason kept
            log.exception("pipeline stage failed")
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            self.metrics.set_status("failed", self.error)
            self.stop()

    def _put_window(self, window: Window | None) -> None:
        if self.source.live or self._stop.is_set():  # keep the newest window, never wait
            self.metrics.increment("windows_dropped", put_latest(self.windows, window))
        else:
            put_blocking(self.windows, window, self._stop)

    def _pose_loop(self) -> None:
        keypoints = np.zeros((0, self.checkpoint.keypoint_channels), np.float32)
        person_found = False
        schedule = PoseSchedule(self.sampling.frame_interval, self.config.pose_every_frame)
        last_frame = None
        try:
            while (frame := get_until_stopped(self.frames, self._stop)) is not None:
                last_frame = frame
                step = self.ring.window_due(frame) if self.people is None else self.people.step_due(frame)
                fresh = schedule.due(frame, step)
                if fresh:
                    result = self.pose.process(frame.image, frame.timestamp)
                    keypoints, person_found = result.keypoints, result.person_found
                    self.metrics.record("pose_ms", result.inference_ms)
                    self.metrics.increment("pose_frames")
                    if self.people is None:
                        window = self.ring.push(frame, keypoints, person_found)
                        step = window is not None
                    else:  # a PeopleStep, on steps with anybody's window
                        window = self.people.push(frame, result.people)
                    if step:
                        schedule.window_ended(frame)
                    if window is not None:
                        self._put_window(window)
                self.metrics.frame_processed(time.perf_counter())
                update = FrameUpdate(frame, keypoints, person_found, fresh, self.latest_prediction,
                                     self.metrics.snapshot(), None if self.people is None else self.people.view())
                self.latest_update = update
                if self.on_frame is not None:
                    self.on_frame(update)
            if last_frame is not None and not self.source.live and not self._stop.is_set():
                # a clip shorter than one window still gets its prediction
                window = self.ring.flush() if self.people is None else self.people.flush(last_frame)
                if window is not None:
                    self._put_window(window)
        finally:
            self.pose.close()
            self._put_window(None)

    def _inference_loop(self) -> None:
        while (window := get_until_stopped(self.windows, self._stop)) is not None:
            if isinstance(window, PeopleStep):
                for prediction, person_window in self.people.infer(self.engine, window):
                    self._deliver(prediction, person_window)
                continue
            inference_ms = math.nan
            if self.postprocess.needs_inference(window):
                start = time.perf_counter()
                frames = None if window.frames is None else window.frames[None]
                scores = self.engine.infer(frames, window.keypoints[None])
                inference_ms = (time.perf_counter() - start) * 1000
                self.metrics.record("inference_ms", inference_ms)
                prediction = self.postprocess.update(window, *(value[0] for value in scores))
            else:
                prediction = self.postprocess.no_person(window)
            prediction.inference_ms = inference_ms
            self._deliver(prediction, window)
        if self.metrics.status == "running":
            self.metrics.set_status("stopped")

    def _deliver(self, prediction: Prediction, window: Window) -> None:
        """Time a finished prediction and hand it on."""
        ready = time.perf_counter()
        prediction.latency_ms = (ready - window.captured_at) * 1000
        prediction.window_to_prediction_ms = (ready - window.completed_at) * 1000
        self.metrics.record("latency_ms", prediction.latency_ms)
        self.metrics.record("window_to_prediction_ms", prediction.window_to_prediction_ms)
        self.metrics.increment("predictions")
        self.latest_prediction = prediction
        if self.on_prediction is not None:
            self.on_prediction(prediction)



def recognize(source: str | int, checkpoint: str | Path | None = None, **options) -> Iterator[Prediction]:
    """Run the pipeline on ``source`` (a video file, URL, folder or camera index) and yield each
    prediction as it is made; ``options`` are :class:`PipelineConfig` fields. Stopping the
    iteration (``break``) stops the pipeline."""
    config = PipelineConfig(source=source, checkpoint=checkpoint or DEFAULT_CHECKPOINT, **options)
    predictions: queue.Queue = queue.Queue()
    pipeline = Pipeline(config, on_prediction=predictions.put)
    pipeline.start()
    try:
        while pipeline.running or not predictions.empty():
            try:
                yield predictions.get(timeout=0.1)
            except queue.Empty:
                continue
    finally:
        pipeline.join()
    if pipeline.error:
        raise StarHarError(pipeline.error)
