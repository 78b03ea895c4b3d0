"""From model outputs to what is shown: smoothing, a confidence threshold, top-k.

Consecutive windows overlap, so their class probabilities are smoothed with an exponential moving
average; below ``threshold`` the answer is "no confident action" instead of a guess, and windows
where nobody is in view for most frames are "no person in view" (the model is not even run).
A checkpoint's open-set calibration (:class:`~star_har.model.openset.OpenSet`: temperature,
threshold, background class, novelty limit) decides what is confident; an explicit threshold
replaces the calibrated one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from star_har.errors import InvalidInputError
from star_har.model.openset import BACKGROUND, OpenSet
from star_har.realtime.ring_buffer import FrameRange, Window

ACTION, UNCERTAIN, NO_PERSON = "action", "uncertain", "no_person"
DEFAULT_THRESHOLD = 0.5  # for checkpoints without an open-set calibration


@dataclass
class Prediction(FrameRange):
    """What the pipeline concluded about one window.

    state: ``"action"`` (``label`` is confident), ``"uncertain"`` (best score below the
        threshold, the background class, or a window unlike anything in training; ``label`` is
        None) or ``"no_person"`` (nobody in view; model not run).
    score: smoothed probability of the best class (0 without a person).
    top_k: ``[(label, probability), ...]`` best first, smoothed.
    probabilities: ``(K,)`` smoothed class probabilities (None without a person).
    importance: ``(T,)`` the model's per-frame importance (sums to 1; zeros without a person).
    frame_indices / timestamps: ``(T,)`` the window's frames on the stream.
    novelty: smoothed novelty score (how unlike the training windows; NaN when not measured).
    Timings in ms (NaN until measured): ``inference_ms`` engine call, ``latency_ms`` last frame
    captured -> prediction ready, ``window_to_prediction_ms`` window cut -> prediction ready.
    """

    state: str
    label: str | None
    score: float
    top_k: list[tuple[str, float]]
    probabilities: np.ndarray | None
    importance: np.ndarray
    frame_indices: np.ndarray
    timestamps: np.ndarray
    inference_ms: float = math.nan
    latency_ms: float = math.nan
    window_to_prediction_ms: float = math.nan
    novelty: float = math.nan

    def text(self) -> str:
        """One line for people: ``squat 83%``, ``no confident action``, ``no person in view``."""
        if self.state == NO_PERSON:
            return "no person in view"
        if self.state == UNCERTAIN:
            return "no confident action"
        return f"{self.label} {self.score:.0%}"

    def to_record(self) -> dict:
        """The JSON Lines record of ``star-har run --output`` (schema in the README)."""

        def ms(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 2)

        return {
            "time": round(float(self.timestamps[-1]), 4),
            "start_time": round(float(self.timestamps[0]), 4),
            "frame_range": [self.first_frame, self.last_frame],
            "frames": [int(i) for i in self.frame_indices],
            "state": self.state,
            "label": self.label,
            "score": round(self.score, 5),
            "top_k": [{"label": name, "score": round(p, 5)} for name, p in self.top_k],
            "importance": [round(float(v), 5) for v in self.importance],
            "novelty": None if math.isnan(self.novelty) else round(self.novelty, 3),
            "inference_ms": ms(self.inference_ms),
            "latency_ms": ms(self.latency_ms),
            "window_to_prediction_ms": ms(self.window_to_prediction_ms),
        }


class PostProcessor:
    """Turns per-window logits into :class:`Prediction` s (keeps the smoothing state).

    threshold: minimum smoothed probability to name an action (None: the calibrated one of
    ``open_set``, else 0.5). smoothing: EMA weight of the past in [0, 1) (0 = each window on its
    own). top_k: classes listed. min_person_fraction: share of a window's frames that must show a
    person for the model to run. open_set: the checkpoint's calibration (its temperature scales
    the logits); None = plain softmax.
    """

    def __init__(self, class_names: list[str], threshold: float | None = None, smoothing: float = 0.5,
                 top_k: int = 3, min_person_fraction: float = 0.5, open_set: OpenSet | None = None) -> None:
        if threshold is None:
            threshold = open_set.threshold if open_set is not None else DEFAULT_THRESHOLD
        if not 0.0 <= smoothing < 1.0:
            raise InvalidInputError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInputError(f"threshold must be in [0, 1], got {threshold}")
        self.class_names = list(class_names)
        self.open_set = open_set or OpenSet()
        self.threshold, self.smoothing = threshold, smoothing
        self.top_k = max(1, min(top_k, len(self.class_names)))
        self.min_person_fraction = min_person_fraction
        self._smoothed: np.ndarray | None = None
        self._smoothed_novelty = math.nan

    def reset(self) -> None:
        self._smoothed, self._smoothed_novelty = None, math.nan

    def needs_inference(self, window: Window) -> bool:
        """Whether enough of ``window`` shows a person for the model to say something."""
        return window.person_fraction >= self.min_person_fraction and window.person_found.any()

    def no_person(self, window: Window) -> Prediction:
        """The prediction for a window without (enough of) a person; forgets the smoothing."""
        self.reset()
        return Prediction(NO_PERSON, None, 0.0, [], None, np.zeros(len(window.frame_indices), np.float32),
                          window.frame_indices, window.timestamps)

    def update(self, window: Window, logits: np.ndarray, importance: np.ndarray,
               novelty: float | None = None) -> Prediction:
        """Prediction for ``window`` from the model's ``(K,)`` logits, ``(T,)`` importance and
        novelty score (None: not measured)."""
        if len(logits) != len(self.class_names):
            raise InvalidInputError(f"model gave {len(logits)} logits for {len(self.class_names)} classes")
        probabilities = self.open_set.probabilities(logits)
        if self._smoothed is not None:
            probabilities = self.smoothing * self._smoothed + (1.0 - self.smoothing) * probabilities
        self._smoothed = probabilities
        if novelty is not None:
            novelty = float(novelty)
            if not math.isnan(self._smoothed_novelty):
                novelty = self.smoothing * self._smoothed_novelty + (1.0 - self.smoothing) * novelty
            self._smoothed_novelty = novelty
        order = np.argsort(probabilities)[::-1][: self.top_k]
        top_k = [(self.class_names[i], float(probabilities[i])) for i in order]
        best_label, best_score = top_k[0]
        confident = best_score >= self.threshold and best_label != BACKGROUND and self.open_set.known(novelty)
        return Prediction(ACTION if confident else UNCERTAIN, best_label if confident else None,
                          best_score, top_k, probabilities.astype(np.float32),
                          np.asarray(importance, dtype=np.float32), window.frame_indices, window.timestamps,
                          novelty=math.nan if novelty is None else novelty)
