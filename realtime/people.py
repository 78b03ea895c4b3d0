"""Every person in view gets an action: per-person windows, batched inference, a cap and a priority.

:class:`PeopleStage` sits where the single-person ring buffer sits in the pipeline. On each frame
pose ran on it

1. converts everybody MediaPipe found into the checkpoint's joint layout and lets the
   :class:`~realtime.tracking.PersonTracker` keep their ids;
2. pushes each confirmed track's keypoints into the track's own ring buffer (a track unseen on
   this frame gets a "nobody" entry, as the single-person pipeline does when its person is
   missing); a track that ends takes its buffer and post-processor with it;
3. on a *step* (every ``hop`` frames, the same for everybody) cuts a window for every track whose
   buffer spans one, ranks them (:func:`priority`) and keeps at most ``max_people``: the
   :class:`PeopleStep` goes to the inference thread as one queue item.

:meth:`PeopleStage.infer` runs all windows of a step that need the model in **one** engine call
(a ``(B, T, J, 3)`` batch) and gives each track's result to its own
:class:`~realtime.postprocess.PostProcessor` (smoothing and open-set state are per person). On a
live source it also keeps the batch inside the time until the next step, dropping the lowest
ranked windows first, so a stream never falls behind; every window left out is counted
(``windows_skipped``).

Threads: ring buffers and the tracker belong to the pose thread, post-processors to the inference
thread (a :class:`PersonState` carries both; the pose thread only creates it). The latest
prediction per person is a plain attribute that the inference thread sets and the pose thread
reads for display.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np

from star_har.model.skeleton import convert_pose
from star_har.pose import MEDIAPIPE_LAYOUT
from star_har.realtime.capture import Frame
from star_har.realtime.postprocess import PostProcessor, Prediction
from star_har.realtime.ring_buffer import RingBuffer, Window
from star_har.realtime.tracking import PersonTracker, Track

#: Seconds of tracking after which a person counts as fully "long tracked" for :func:`priority`.
TENURE_SECONDS = 5.0


@dataclass
class PersonPrediction(Prediction):
    """A :class:`~realtime.postprocess.Prediction` about one tracked person: ``track_id`` and the
    person's ``box`` (x1, y1, x2, y2 pixels of the frame at the window's last frame)."""

    track_id: int = 0
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def text(self) -> str:
        return f"#{self.track_id} {super().text()}"

    def to_record(self) -> dict:
        return {**super().to_record(), "track_id": self.track_id, "box": [round(float(v), 1) for v in self.box]}


@dataclass(eq=False)
class PersonState:
    """One tracked person's share of the pipeline."""

    track: Track
    ring: RingBuffer
    postprocess: PostProcessor
    prediction: PersonPrediction | None = None


@dataclass(frozen=True)
class Person:
    """One tracked person on one frame, for display. keypoints ``(J, 3)`` / box: pixels of the
    frame at the last time the person was seen (``visible`` False while hidden)."""

    track_id: int
    keypoints: np.ndarray
    box: np.ndarray
    visible: bool
    prediction: PersonPrediction | None


@dataclass(frozen=True)
class PersonWindow:
    state: PersonState
    window: Window
    box: np.ndarray
    priority: float


@dataclass
class PeopleStep:
    """The windows cut on one step, best ranked first (one item of the windows queue)."""

    windows: list[PersonWindow]
    completed_at: float = field(default_factory=time.perf_counter)


def priority(box: np.ndarray, largest_area: float, age: float, frame_size: tuple[int, int]) -> float:
    """Who is recognised first, in [0, 3]: size relative to the largest person in view, closeness
    to the frame's centre and time tracked (saturating at :data:`TENURE_SECONDS`), equally weighted."""
    height, width = frame_size
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0)
    centre = np.array([(box[0] + box[2]) / 2 - width / 2, (box[1] + box[3]) / 2 - height / 2])
    centrality = 1.0 - min(1.0, float(np.linalg.norm(centre)) / math.hypot(width / 2, height / 2))
    return area / max(largest_area, 1.0) + centrality + min(age / TENURE_SECONDS, 1.0)


class PeopleStage:
    """Tracks, per-person windows and batched inference (see the module doc).

    ring / postprocess: configured, unused templates; each person gets a copy of both.
    max_people: windows per step at most (the best ranked). metrics: a :class:`~realtime.metrics.Metrics`.
    live: keep each step's inference inside the time until the next step.
    """

    def __init__(self, ring: RingBuffer, postprocess: PostProcessor, layout: str, metrics,
                 max_people: int | None = None, live: bool = False, tracker: PersonTracker | None = None) -> None:
        self.ring_template, self.postprocess_template = ring, postprocess
        self.layout, self.metrics, self.max_people, self.live = layout, metrics, max_people, live
        self.tracker = tracker or PersonTracker(layout)
        self.states: dict[int, PersonState] = {}
        self._last_step: int | None = None
        self._last_step_time: float | None = None
        self._step_seconds: float | None = None
        self._ms_per_window: float | None = None  # inference cost, for the live budget

    # -- pose thread ---------------------------------------------------------------------------
    def step_due(self, frame: Frame) -> bool:
        """Whether ``frame`` is a step (windows are cut on it): every ``hop`` frames (and after the
        stream's numbering started again). The hop is the template ring buffer's, so a change to it
        (the GUI's "Prediction every") applies to everybody."""
        return self._last_step is None or not 0 <= frame.index - self._last_step < self.ring_template.hop

    def push(self, frame: Frame, people: np.ndarray) -> PeopleStep | None:
        """Add the ``(P, 33, 3)`` (or ``(P, 33, 4)`` with depth) MediaPipe people of ``frame``; returns
        the step's windows when due."""
        people = np.asarray(people, np.float32)
        people = convert_pose(people.reshape(-1, 33, people.shape[-1] if people.ndim == 3 else 3),
                              MEDIAPIPE_LAYOUT, self.layout)
        tracks = self.tracker.update(people, frame.timestamp, frame.image.shape[1])
        for track in self.tracker.ended:
            del self.states[track.track_id]
            self.metrics.increment("tracks_ended")
        step = self.step_due(frame)
        if step:
            if self._last_step_time is not None:
                self._step_seconds = frame.timestamp - self._last_step_time
            self._last_step, self._last_step_time = frame.index, frame.timestamp
        cut: list[tuple[PersonState, Window]] = []
        for track in tracks:
            state = self.states.get(track.track_id)
            if state is None:
                state = self.states[track.track_id] = PersonState(
                    track, copy.deepcopy(self.ring_template), copy.deepcopy(self.postprocess_template))
                self.metrics.increment("tracks_started")
            keypoints = track.keypoints if track.visible else np.zeros_like(track.keypoints)
            # windows are cut on steps only, so everybody's windows end on the same frames and share
            # one engine call
            window = state.ring.push(frame, keypoints, track.visible, cut=step)
            if window is not None:
                cut.append((state, window))
        if not step:
            return None
        return self._rank(cut, frame)

    def flush(self, frame: Frame) -> PeopleStep | None:
        """At the end of a finite source (``frame`` its last): one window for every person tracked
        now whose buffer never spanned one (:meth:`RingBuffer.flush`)."""
        cut = [(state, window) for state in self.states.values() if (window := state.ring.flush()) is not None]
        return self._rank(cut, frame)

    def _rank(self, cut: list[tuple[PersonState, Window]], frame: Frame) -> PeopleStep | None:
        """The step of ``cut`` windows, best ranked first, capped at ``max_people`` (skips counted)."""
        if not cut:
            return None
        largest = max(float((s.track.box[2] - s.track.box[0]) * (s.track.box[3] - s.track.box[1])) for s, _ in cut)
        ranked = sorted((PersonWindow(state, window, state.track.box.copy(),
                                      priority(state.track.box, largest, state.track.age(frame.timestamp),
                                               frame.image.shape[:2])) for state, window in cut),
                        key=lambda w: -w.priority)
        if self.max_people is not None and len(ranked) > self.max_people:
            self.metrics.increment("windows_skipped", len(ranked) - self.max_people)
            ranked = ranked[: self.max_people]
        return PeopleStep(ranked)

    def view(self) -> tuple[Person, ...]:
        """Everybody tracked now, with their latest predictions (for the overlay and the GUI)."""
        return tuple(Person(s.track.track_id, s.track.keypoints, s.track.box, s.track.visible, s.prediction)
                     for s in self.states.values())

    # -- inference thread ----------------------------------------------------------------------
    def infer(self, engine, step: PeopleStep) -> list[tuple[PersonPrediction, Window]]:
        """Predictions for the step's windows (with each window, for its timings): one engine call
        for all that need the model."""
        needed = [w for w in step.windows if w.state.postprocess.needs_inference(w.window)]
        affordable = self._affordable(len(needed))
        windows = step.windows
        if affordable < len(needed):
            self.metrics.increment("windows_skipped", len(needed) - affordable)
            skipped = {id(w) for w in needed[affordable:]}
            needed = needed[:affordable]
            windows = [w for w in windows if id(w) not in skipped]
        outputs: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        inference_ms = math.nan
        if needed:
            start = time.perf_counter()
            frames = None if needed[0].window.frames is None else np.stack([w.window.frames for w in needed])
            scores = engine.infer(frames, np.stack([w.window.keypoints for w in needed]))
            inference_ms = (time.perf_counter() - start) * 1000
            self.metrics.record("inference_ms", inference_ms)
            per_window = inference_ms / len(needed)
            self._ms_per_window = per_window if self._ms_per_window is None else \
                0.7 * self._ms_per_window + 0.3 * per_window
            outputs = {id(w): tuple(value[i] for value in scores) for i, w in enumerate(needed)}
        predictions = []
        for w in windows:
            if id(w) in outputs:
                prediction = w.state.postprocess.update(w.window, *outputs[id(w)])
                prediction.inference_ms = inference_ms
            else:
                prediction = w.state.postprocess.no_person(w.window)
            person = PersonPrediction(**vars(prediction), track_id=w.state.track.track_id,
                                      box=tuple(float(v) for v in w.box))
            w.state.prediction = person
            predictions.append((person, w.window))
        return predictions

    def _affordable(self, count: int) -> int:
        """How many windows fit the time until the next step (live sources; at least one)."""
        if not self.live or self._ms_per_window is None or not self._step_seconds:
            return count
        return max(1, min(count, int(self._step_seconds * 1000 // self._ms_per_window)))
