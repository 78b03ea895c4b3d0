"""Post-processing (smoothing, threshold, top-k, no person), metrics and the overlay drawing."""

from __future__ import annotations

import json
import math
import queue
import time

import numpy as np
import pytest

from star_har.model.openset import OpenSet
from star_har.realtime.metrics import Metrics
from star_har.realtime.overlay import draw_overlay
from star_har.realtime.postprocess import ACTION, NO_PERSON, UNCERTAIN, PostProcessor
from star_har.realtime.ring_buffer import Window

NAMES = ["clap", "jump", "squat", "wave"]


def window(person: float = 1.0, T: int = 16) -> Window:
    found = np.arange(T) < round(person * T)
    return Window(None, np.zeros((T, 13, 3), np.float32), found, np.arange(T) * 3, np.arange(T) * 0.1, 0.0, 0.0)


def logits_for(probabilities: list[float]) -> np.ndarray:
    return np.log(np.asarray(probabilities))


def test_confident_prediction_with_top_k_and_importance():
    post = PostProcessor(NAMES, threshold=0.5, smoothing=0.0, top_k=3)
    importance = np.linspace(1, 2, 16) / np.linspace(1, 2, 16).sum()
    p = post.update(window(), logits_for([0.1, 0.7, 0.15, 0.05]), importance)
    assert p.state == ACTION and p.label == "jump" and p.score == pytest.approx(0.7)
    assert [name for name, _ in p.top_k] == ["jump", "squat", "clap"]
    np.testing.assert_allclose(p.importance, importance, rtol=1e-6)
    assert p.text() == "jump 70%"


def test_below_threshold_is_no_confident_action():
    post = PostProcessor(NAMES, threshold=0.5, smoothing=0.0)
    p = post.update(window(), logits_for([0.3, 0.3, 0.2, 0.2]), np.full(16, 1 / 16))
    assert p.state == UNCERTAIN and p.label is None and p.text() == "no confident action"
    assert p.top_k[0][1] == pytest.approx(0.3)


def test_smoothing_is_an_exponential_moving_average_reset_without_person():
    post = PostProcessor(NAMES, threshold=0.5, smoothing=0.75)
    first, second = [0.1, 0.7, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1]
    post.update(window(), logits_for(first), np.full(16, 1 / 16))
    p = post.update(window(), logits_for(second), np.full(16, 1 / 16))
    np.testing.assert_allclose(p.probabilities, 0.75 * np.array(first) + 0.25 * np.array(second), rtol=1e-5)
    assert p.label == "jump"  # one window of something else does not flip the answer
    assert not post.needs_inference(window(person=0.25))
    gone = post.no_person(window(person=0.0))
    assert gone.state == NO_PERSON and gone.text() == "no person in view" and not gone.importance.any()
    p = post.update(window(), logits_for(second), np.full(16, 1 / 16))
    np.testing.assert_allclose(p.probabilities, second, rtol=1e-5)  # history forgotten


def test_record_is_json_with_the_documented_fields():
    post = PostProcessor(NAMES, smoothing=0.0)
    p = post.update(window(), logits_for([0.1, 0.7, 0.1, 0.1]), np.full(16, 1 / 16))
    p.latency_ms = 12.345
    record = json.loads(json.dumps(p.to_record()))
    assert set(record) == {"time", "start_time", "frame_range", "frames", "state", "label", "score", "top_k",
                           "importance", "novelty", "inference_ms", "latency_ms", "window_to_prediction_ms"}
    assert record["frame_range"] == [0, 45] and record["time"] == pytest.approx(1.5)
    assert record["latency_ms"] == 12.35 and record["inference_ms"] is None
    assert record["top_k"][0] == {"label": "jump", "score": pytest.approx(0.7)}


def test_invalid_settings():
    with pytest.raises(ValueError, match="smoothing"):
        PostProcessor(NAMES, smoothing=1.0)
    with pytest.raises(ValueError, match="threshold"):
        PostProcessor(NAMES, threshold=2.0)
    with pytest.raises(ValueError, match="logits"):
        PostProcessor(NAMES).update(window(), np.zeros(3), np.zeros(16))
    assert OpenSet().probabilities(np.array([1000.0, 1000.0])) == pytest.approx([0.5, 0.5])


def test_metrics_snapshot_and_summary():
    metrics = Metrics(recent=2)
    q: queue.Queue = queue.Queue(maxsize=3)
    q.put(1)
    metrics.watch_queue("frames", q)
    now = time.perf_counter()  # rates cover the last seconds up to now
    for i in range(5):
        metrics.frame_captured(now - 0.4 + i / 10)
        metrics.record("pose_ms", float(i))
    metrics.increment("frames_dropped", 2)
    snapshot = metrics.snapshot()
    assert snapshot.capture_fps == pytest.approx(10.0)
    assert snapshot.pose_ms == pytest.approx(3.5)  # mean of the 2 most recent
    assert math.isnan(snapshot.inference_ms)
    assert snapshot.queue_depths == {"frames": 1} and snapshot.frames_dropped == 2
    summary = metrics.summary()
    assert summary["pose_ms"]["max"] == 4.0 and summary["frames_captured"] == 5
    assert "pose   3.5 ms" in "\n".join(snapshot.lines())


def test_overlay_draws_skeleton_prediction_importance_and_metrics():
    image = np.zeros((240, 320, 3), np.uint8)
    kp = np.zeros((13, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(100, 200, 13), np.linspace(60, 200, 13), 0.9
    kp[0, 2] = 0.1  # below the model's confidence cut: not drawn
    post = PostProcessor(NAMES, smoothing=0.0)
    p = post.update(window(), logits_for([0.1, 0.7, 0.1, 0.1]), np.linspace(0, 1, 16))
    out = draw_overlay(image, kp, "penn13", p, Metrics().snapshot())
    assert out is not image and not image.any()  # the input is left alone
    assert out[int(kp[5, 1]), int(kp[5, 0])].any()  # a confident joint is drawn
    assert out[220:232, 10:150].any()  # importance bars along the bottom
    assert out[:40, :120].any() and out[:40, 200:].any()  # label (left) and metrics (right)
    for prediction in (None, post.no_person(window(person=0.0))):
        assert draw_overlay(image, None, "penn13", prediction).any()  # states are drawn, too
