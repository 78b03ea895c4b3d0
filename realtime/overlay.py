"""Drawing the pipeline's results onto BGR frames with OpenCV (used by the GUI and ``star-har run``).

:func:`draw_overlay` draws everything; the parts are separate functions:

* :func:`draw_skeleton`: the layout's bones, joints shaded by confidence (red = unsure, green = sure);
* :func:`draw_people`: every tracked person (multi-person runs): skeleton and box in the person's
  own colour (:func:`track_colour`), ``#id`` and the person's action above the head;
* :func:`draw_prediction`: the action and its confidence, then the next best (or the state:
  "no confident action", "no person in view");
* :func:`draw_importance`: one bar per window frame, its height the model's frame importance;
* :func:`draw_metrics`: the live measurements.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from star_har.model.skeleton import JointLayout, get_layout
from star_har.realtime.metrics import MetricsSnapshot
from star_har.realtime.people import Person
from star_har.realtime.postprocess import ACTION, NO_PERSON, Prediction

FONT = cv2.FONT_HERSHEY_SIMPLEX
STATE_COLOURS = {ACTION: (80, 220, 80), NO_PERSON: (170, 170, 170)}  # BGR
UNCERTAIN_COLOUR = (0, 200, 255)
BONE_COLOUR = (255, 200, 60)
# Distinct BGR colours for people, by track id (ids are never reused, the palette cycles).
TRACK_COLOURS = ((255, 200, 60), (60, 120, 255), (80, 220, 80), (230, 80, 230), (0, 215, 255),
                 (255, 120, 120), (160, 255, 200), (40, 160, 160))


def _scale(image: np.ndarray) -> float:
    """Text / line scale relative to a 480-pixel-high frame."""
    return max(0.35, image.shape[0] / 480)


def confidence_colour(confidence: float) -> tuple[int, int, int]:
    """BGR from red (confidence 0) through yellow to green (1)."""
    c = float(np.clip(confidence, 0.0, 1.0))
    return 0, int(255 * min(1.0, 2 * c)), int(255 * min(1.0, 2 * (1 - c)))


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float,
          colour: tuple[int, int, int], thickness: int = 1) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(image, text, origin, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


def track_colour(track_id: int) -> tuple[int, int, int]:
    """The BGR colour of a person's skeleton, box and label."""
    return TRACK_COLOURS[(track_id - 1) % len(TRACK_COLOURS)]


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, layout: str | JointLayout,
                  min_confidence: float = 0.2, colour: tuple[int, int, int] = BONE_COLOUR) -> np.ndarray:
    """Draw ``(J, 3)`` pixel keypoints of ``layout`` in place, bones in ``colour``; joints at or
    below ``min_confidence`` (the model ignores them too) are left out."""
    layout = get_layout(layout)
    if len(keypoints) != layout.num_joints:
        return image
    s = _scale(image)
    points = np.round(keypoints[:, :2]).astype(int)
    visible = keypoints[:, 2] > min_confidence
    for a, b in layout.bones:
        if visible[a] and visible[b]:
            cv2.line(image, tuple(points[a]), tuple(points[b]), colour, max(1, round(2 * s)), cv2.LINE_AA)
    for j in np.flatnonzero(visible):
        cv2.circle(image, tuple(points[j]), max(2, round(4 * s)), confidence_colour(keypoints[j, 2]), -1,
                   cv2.LINE_AA)
    return image


def person_label(person: Person) -> str:
    """``#2 squat 83%`` (the latest prediction), ``#2 waiting for a window`` before the first one, and
    ``#2 back in view`` while the latest window mostly missed a person who is visible again."""
    prediction = person.prediction
    if prediction is None:
        return f"#{person.track_id} waiting for a window"
    if prediction.state == NO_PERSON and person.visible:
        return f"#{person.track_id} back in view"
    return prediction.text()


def draw_people(image: np.ndarray, people: Sequence[Person], layout: str | JointLayout) -> np.ndarray:
    """Draw every person in place: skeleton and box in :func:`track_colour`, ``#id`` and the
    person's latest action above the box. People hidden right now keep only a thin box where
    they were last seen."""
    s = _scale(image)
    for person in people:
        colour = track_colour(person.track_id)
        x1, y1, x2, y2 = (int(round(v)) for v in person.box)
        if person.visible:
            draw_skeleton(image, person.keypoints, layout, colour=colour)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, max(1, round((2 if person.visible else 1) * s)))
        _text(image, person_label(person), (x1, max(round(14 * s), y1 - round(6 * s))), 0.55 * s, colour, 1)
    return image


def draw_prediction(image: np.ndarray, prediction: Prediction | None) -> np.ndarray:
    """Draw the predicted action (top left) in place."""
    s = _scale(image)
    x, y = round(10 * s), round(32 * s)
    if prediction is None:
        _text(image, "waiting for the first window...", (x, y), 0.7 * s, STATE_COLOURS[NO_PERSON], 2)
        return image
    colour = STATE_COLOURS.get(prediction.state, UNCERTAIN_COLOUR)
    _text(image, prediction.text(), (x, y), 0.9 * s, colour, 2)
    others = prediction.top_k[1:] if prediction.state == ACTION else prediction.top_k
    for k, (label, score) in enumerate(others[:2]):
        prefix = "best: " if prediction.state != ACTION and k == 0 else "next: "
        _text(image, f"{prefix}{label} {score:.0%}", (x, y + round((26 + 22 * k) * s)), 0.55 * s,
              (230, 230, 230))
    return image


def draw_importance(image: np.ndarray, prediction: Prediction | None) -> np.ndarray:
    """Draw the window's per-frame importance as bars along the bottom edge, in place."""
    if prediction is None or not np.any(prediction.importance):
        return image
    importance = np.asarray(prediction.importance, dtype=np.float32)
    s = _scale(image)
    height, width = image.shape[:2]
    bar_width = max(2, round(8 * s))
    gap, max_height = max(1, round(2 * s)), round(40 * s)
    x0, bottom = round(10 * s), height - round(8 * s)
    peak = float(importance.max())
    for t, value in enumerate(importance):
        x = x0 + t * (bar_width + gap)
        if x + bar_width > width:
            break
        top = bottom - max(1, round(max_height * value / peak))
        cv2.rectangle(image, (x, top), (x + bar_width - 1, bottom), (60, 160, 255), -1)
    _text(image, "frame importance", (x0, bottom - max_height - round(6 * s)), 0.4 * s, (230, 230, 230))
    return image


def draw_metrics(image: np.ndarray, metrics: MetricsSnapshot | None) -> np.ndarray:
    """Draw the live measurements (top right) in place."""
    if metrics is None:
        return image
    s = _scale(image)
    scale = 0.4 * s
    for k, line in enumerate(metrics.lines()):
        (w, _), _ = cv2.getTextSize(line, FONT, scale, 1)
        _text(image, line, (image.shape[1] - w - round(8 * s), round((16 + 16 * k) * s)), scale, (240, 240, 240))
    return image


def draw_overlay(image: np.ndarray, keypoints: np.ndarray | None, layout: str | JointLayout,
                 prediction: Prediction | None, metrics: MetricsSnapshot | None = None,
                 copy: bool = True, people: Sequence[Person] | None = None) -> np.ndarray:
    """Everything on a ``(H, W, 3)`` uint8 BGR frame; returns it (a copy unless ``copy=False``).

    keypoints: ``(J, 3)`` pixels of ``image`` in ``layout`` (None: no skeleton).
    people: the tracked people of a multi-person run (None: single-person); each is drawn with
    their own action, in place of the main person's skeleton and prediction.
    """
    canvas = image.copy() if copy else image
    if people is not None:
        draw_people(canvas, people, layout)
        _text(canvas, f"{len(people)} people tracked", (round(10 * _scale(canvas)), round(24 * _scale(canvas))),
              0.6 * _scale(canvas), (240, 240, 240), 1)
    else:
        if keypoints is not None:
            draw_skeleton(canvas, keypoints, layout)
        draw_prediction(canvas, prediction)
        draw_importance(canvas, prediction)
    draw_metrics(canvas, metrics)
    return canvas
