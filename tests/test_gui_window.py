"""The PyQt6 window (offscreen): frames flow, the skeleton and importance bars are drawn where they
should be, memory stays bounded on long runs, errors are shown, closing joins every thread.

Runs a real :class:`~realtime.pipeline.Pipeline` (torch engine, tiny random checkpoint) on small
project-made videos, with a fake pose estimator so no MediaPipe model is needed.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from star_har.realtime.gui.app import create_app  # noqa: E402
from star_har.realtime.gui.widgets import ImportanceBars, ThumbnailCache  # noqa: E402
from star_har.realtime.gui.window import MainWindow  # noqa: E402
from star_har.realtime.overlay import confidence_colour  # noqa: E402
from star_har.realtime.pipeline import Pipeline, PipelineConfig  # noqa: E402
from tests.realtime_helpers import FakePose, SyntheticSource, tiny_checkpoint  # noqa: E402

# A standing person in a 320 x 240 frame, penn13 order, confidence 0.9.
PERSON = np.array([[160, 40], [140, 70], [180, 70], [130, 100], [190, 100], [125, 130], [195, 130],
                   [148, 130], [172, 130], [146, 170], [174, 170], [145, 210], [175, 210]], np.float32)
KEYPOINTS = np.concatenate([PERSON, np.full((13, 1), 0.9, np.float32)], axis=1)


@pytest.fixture(scope="module", autouse=True)
def qt_app():
    return create_app()


def _write_video(path: Path, frames: int, size: tuple[int, int]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), (40 + i) % 200, np.uint8)
        cv2.rectangle(image, (i % size[0], 10), (i % size[0] + 8, 30), (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    return {"checkpoint": tiny_checkpoint(root / "tiny.pt"),
            "short": _write_video(root / "short.avi", 90, (320, 240)),
            "long": _write_video(root / "long.avi", 3000, (64, 48)),
            "root": root}


def _factory(config, **kwargs) -> Pipeline:
    pose = FakePose()
    pose.keypoints = KEYPOINTS.copy()
    return Pipeline(config, pose=pose, **kwargs)


def _window(qtbot, media, source="short", hop=4) -> MainWindow:
    config = PipelineConfig(source=str(media[source]), checkpoint=media["checkpoint"], engine="torch",
                            hop_seconds=hop / 30)
    window = MainWindow(config, _factory)
    qtbot.addWidget(window)
    window.show()
    return window


def _pixel(image, point) -> tuple[int, int, int]:
    colour = image.pixelColor(round(point.x()), round(point.y()))
    return colour.red(), colour.green(), colour.blue()


def test_frames_flow_and_skeleton_is_drawn_on_the_joints(qtbot, media):
    window = _window(qtbot, media)
    window.start()
    qtbot.waitUntil(lambda: window.predictions_seen >= 3, timeout=30000)
    assert window.controller.state == "running"
    assert "torch on cpu" in window.status_labels["engine"].text()
    assert "fps" in window.status_labels["fps"].text()
    assert window.prediction_panel.names[0].text()  # top class listed with its score
    assert len(window.timeline.entries) >= 3

    window.resize(900, 700)  # resizes cleanly: joints follow the scaled frame
    qtbot.wait(100)
    image = window.video.grab().toImage()
    b, g, r = confidence_colour(0.9)
    for x, y in PERSON:
        got = np.array(_pixel(image, window.video.map_point(x, y)))
        assert np.abs(got - (r, g, b)).max() <= 40, (x, y, got)
    # off the skeleton, the frame itself shows (no joint colour there)
    corner = np.array(_pixel(image, window.video.map_point(5, 235)))
    assert np.abs(corner - (r, g, b)).max() > 40

    window.toggle_pause()
    assert window.controller.state == "paused"
    window.toggle_pause()
    assert window.controller.state == "running"
    window.close()


def test_importance_bars_follow_the_values(qtbot):
    bars = ImportanceBars()
    qtbot.addWidget(bars)
    bars.resize(640, 140)
    values = np.array([1, 2, 3, 4, 8, 4, 3, 2, 1, 1, 2, 2, 6, 1, 1, 1], np.float32)
    bars.set_window(values / values.sum(), np.arange(100, 116))
    image = bars.grab().toImage()
    rects = bars.bar_rects()
    assert len(rects) == 16
    heights = []
    for rect in rects:
        x = round(rect.center().x())
        filled = [y for y in range(image.height()) if _pixel_is_bar(image.pixelColor(x, y))]
        heights.append(len(filled))
    heights = np.array(heights, np.float32)
    # measured bar heights are proportional to the values, the tallest bar is the largest value
    np.testing.assert_allclose(heights / heights.max(), values / values.max(), atol=0.06)
    assert int(np.argmax(heights)) == 4
    # bars are ordered left to right like the frames
    assert all(a.x() < b.x() for a, b in zip(rects, rects[1:]))


def _pixel_is_bar(colour) -> bool:
    return colour.red() > 200 and 60 <= colour.green() <= 180 and colour.blue() < 80


def test_long_run_keeps_memory_bounded(qtbot, media):
    # Traced bytes, not gc.get_objects(): listing every object from this thread can catch a tuple
    # another thread is still building and make CPython 3.11 raise SystemError there.
    tracemalloc.start()
    window = _window(qtbot, media, source="long", hop=8)
    traced: list[int] = []  # bytes Python holds after frame 600, then after frame 2900

    def sample(prediction) -> None:
        if prediction.last_frame >= (600, 2900)[min(len(traced), 1)] and len(traced) < 2:
            traced.append(tracemalloc.get_traced_memory()[0])

    window.controller.prediction_ready.connect(sample)
    window.controller.start(replace(window.current_config(), realtime_pace=False))
    ended = []
    window.controller.finished.connect(ended.append)
    try:
        qtbot.waitUntil(lambda: bool(ended), timeout=60000)
    finally:
        tracemalloc.stop()
    assert ended == [""]
    assert window.predictions_seen > 300
    assert len(window.timeline.entries) == window.timeline.capacity
    assert window.history.count() <= 50
    assert len(window.controller.thumbnails) <= window.controller.thumbnails.capacity
    # about 0.1 MB here; keeping every 9 KB frame of those 2,300 would add 21 MB
    assert len(traced) == 2 and traced[1] - traced[0] < 1_000_000, traced
    window.close()


def test_thumbnail_cache_is_bounded():
    cache = ThumbnailCache(capacity=5, height=8)
    for i in range(20):
        cache.add(i, np.zeros((48, 64, 3), np.uint8))
    assert len(cache) == 5
    assert cache.get(np.array([14, 15, 19]))[0] is None and cache.get(np.array([19]))[0] is not None


def test_close_joins_every_thread_and_recording_is_written(qtbot, media):
    window = _window(qtbot, media)
    window.start()
    qtbot.waitUntil(lambda: window.predictions_seen >= 1, timeout=30000)
    video = media["root"] / "recorded.avi"
    window.controller.start_recording(video)
    qtbot.waitUntil(lambda: window.controller._recorder.frames_written >= 5, timeout=10000)
    threads = window.controller.threads()
    assert any(t.name == "star-har-pose" for t in threads)
    window.close()
    assert not [t for t in threads if t.is_alive()]
    assert not [t for t in threading.enumerate() if t.name.startswith("star-har")]
    capture = cv2.VideoCapture(str(video))
    assert capture.read()[0]
    capture.release()


def test_lost_camera_is_reported_then_recovers(qtbot, media, monkeypatch):
    camera = SyntheticSource(10**6, size=(240, 320), live=True, fail_after=30, failed_opens=1, delay=0.01)
    monkeypatch.setattr("star_har.realtime.gui.controller.open_source", lambda *args: camera)
    window = _window(qtbot, media)
    window.start()
    qtbot.waitUntil(lambda: window.message.text().startswith("source lost"), timeout=20000)
    assert "retry" in window.message.text()
    qtbot.waitUntil(lambda: "reconnected" in window.message.text(), timeout=20000)
    frames = window.controller.pipeline.metrics.snapshot().frames_captured
    qtbot.waitUntil(lambda: window.controller.pipeline.metrics.snapshot().frames_captured > frames + 5)
    window.close()


@pytest.mark.parametrize("problem, expected, placeholder", [
    ("checkpoint", "not a star-har checkpoint", "the model could not be loaded"),
    ("source", "video not found", "the source could not be played")])
def test_errors_show_in_the_window(qtbot, media, problem, expected, placeholder):
    """A checkpoint error was once labelled 'the source could not be played'."""
    window = _window(qtbot, media)
    if problem == "checkpoint":
        bad = media["root"] / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        window.model_box.setEditText(str(bad))
    else:
        window.source_box.setEditText(str(media["root"] / "missing.mp4"))
    window.start()
    qtbot.waitUntil(lambda: window.message.isVisible(), timeout=20000)
    assert expected in window.message.text()
    assert window.video.placeholder.startswith(placeholder)
    assert window.controller.state == "idle"
    window.close()


def test_closing_while_loading_returns_at_once(qtbot, media):
    """Closing once joined the loader on the UI thread: the window froze for the 10-12 s of loading."""
    release = threading.Event()
    poses: list[FakePose] = []

    def slow_factory(config, **kwargs):
        release.wait(20)  # an engine warm-up or a MediaPipe load in progress
        pipeline = _factory(config, **kwargs)
        poses.append(pipeline.pose)
        return pipeline

    window = MainWindow(PipelineConfig(source=str(media["short"]), checkpoint=media["checkpoint"],
                                       engine="torch"), slow_factory)
    qtbot.addWidget(window)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.controller.state == "loading")
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 1.0
    release.set()
    window.controller.wait_for_threads(20)
    assert poses and poses[0].closed  # the loader closed what it loaded: nothing left running
    assert not [t for t in threading.enumerate() if t.name.startswith("star-har")]


def test_status_bar_rates_fall_while_the_camera_is_gone(qtbot, media, monkeypatch):
    """The status bar kept showing the last frame rate while no frame came."""
    camera = SyntheticSource(10**6, size=(240, 320), live=True, fail_after=60, failed_opens=10**6, delay=0.01)
    monkeypatch.setattr("star_har.realtime.gui.controller.open_source", lambda *args: camera)
    window = _window(qtbot, media)
    window.start()
    qtbot.waitUntil(lambda: window.message.text().startswith("source lost"), timeout=20000)
    qtbot.waitUntil(lambda: window.status_labels["fps"].text() == "capture 0.0 fps", timeout=10000)
    first = window.message.text()
    qtbot.waitUntil(lambda: window.message.text() != first, timeout=5000)  # the countdown moves
    window.close()


def test_model_selector_offers_the_shipped_models_by_name(qtbot, media):
    from star_har.realtime import MODELS, model_checkpoint

    window = _window(qtbot, media)
    assert [window.model_box.itemText(i) for i in range(window.model_box.count())] == list(MODELS)
    window.model_box.setCurrentText("penn-sports")
    assert window.current_config().checkpoint == str(model_checkpoint("penn-sports"))
    window.model_box.setEditText(str(media["checkpoint"]))
    assert window.current_config().checkpoint == str(media["checkpoint"])
    window.close()


def test_a_recording_that_fails_stops_with_a_message(qtbot, media, monkeypatch):
    """A full disk during a GUI recording: the recording stops, says why, and the file is finished."""
    monkeypatch.setattr("star_har.realtime.recorder._free_bytes", lambda path: 0)
    window = _window(qtbot, media, source="long")
    window.start()
    qtbot.waitUntil(lambda: window.predictions_seen >= 1, timeout=30000)
    video = media["root"] / "full.avi"
    window.controller.start_recording(video)
    qtbot.waitUntil(lambda: window.message.text().startswith("recording stopped: disk almost full"), timeout=20000)
    assert not window.controller.recording and not window.record_action.isChecked()
    assert window.controller.state == "running"  # the recognition goes on
    window.close()
    capture = cv2.VideoCapture(str(video))
    assert capture.read()[0]
    capture.release()


def test_importance_bars_say_what_they_mean_and_highlight_the_top_frame(qtbot):
    bars = ImportanceBars()
    qtbot.addWidget(bars)
    bars.resize(640, 140)
    bars.set_source("head")
    assert "estimated" in bars.caption and "if the frame were removed" in bars.toolTip()
    bars.set_source("occlusion")
    assert "measured" in bars.toolTip()
    bars.set_source("gradient")
    assert "gradient" in bars.toolTip() and "first-order" in bars.caption
    values = np.full(16, 1.0, np.float32)
    values[9] = 3.0
    bars.set_window(values / values.sum(), np.arange(16))
    image = bars.grab().toImage()
    colours = {t: image.pixelColor(round(rect.center().x()), round(rect.bottom()) - 2).name()
               for t, rect in enumerate(bars.bar_rects())}
    assert len({c for t, c in colours.items() if t != 9}) == 1 and colours[9] != colours[0]
