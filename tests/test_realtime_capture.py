"""Capture: real decoding, source errors, live dropping, reconnecting a failing camera."""

from __future__ import annotations

import queue
import time

import cv2
import numpy as np
import pytest

from star_har.realtime.capture import CaptureThread, ImageFolderSource, RetryPolicy, SourceError, open_source
from star_har.realtime.metrics import Metrics
from tests.realtime_helpers import SyntheticSource


def drain(q: queue.Queue, timeout: float = 20.0) -> list:
    """Every frame up to the end-of-stream ``None``."""
    frames = []
    while (item := q.get(timeout=timeout)) is not None:
        frames.append(item)
    return frames


def test_decodes_every_frame_of_a_real_video(tai_chi_video):
    source = open_source(str(tai_chi_video))
    assert not source.live and source.fps == pytest.approx(30, abs=0.1)
    out: queue.Queue = queue.Queue(maxsize=2)  # small: a file must wait for the consumer, not drop
    capture = CaptureThread(source, out, Metrics())
    capture.start()
    frames = drain(out)
    capture.join(5)
    assert len(frames) == 300
    assert [f.index for f in frames] == list(range(300))
    assert frames[0].image.shape == (256, 340, 3) and frames[0].image.dtype == np.uint8
    assert frames[-1].timestamp == pytest.approx(299 / source.fps)
    assert capture.metrics.snapshot().frames_dropped == 0
    assert capture.metrics.status == "ended"


def test_max_frames_and_pacing(tai_chi_video):
    out: queue.Queue = queue.Queue(maxsize=100)
    capture = CaptureThread(open_source(tai_chi_video), out, pace=True, max_frames=6)
    start = time.perf_counter()
    capture.start()
    frames = drain(out)
    assert len(frames) == 6
    # paced: no frame is delivered before its media time (a lower bound, not a speed test)
    assert all(f.captured_at - start >= f.timestamp - 0.01 for f in frames)


@pytest.mark.parametrize("spec, message", [("missing_clip.mp4", "video not found: missing_clip.mp4"),
                                           ("37", "camera 37 not found")])
def test_unopenable_source_is_a_one_line_error(spec, message):
    with pytest.raises(SourceError) as info:
        open_source(spec)
    assert str(info.value) == message


def test_image_folder(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((20, 30, 3), 50 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(tmp_path, fps=10)
    assert isinstance(source, ImageFolderSource) and not source.live
    out: queue.Queue = queue.Queue(maxsize=8)
    CaptureThread(source, out).start()
    frames = drain(out)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100, 150]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "empty")


def test_live_source_keeps_the_newest_frames_and_counts_drops():
    out: queue.Queue = queue.Queue(maxsize=2)
    metrics = Metrics()
    capture = CaptureThread(SyntheticSource(200, live=True), out, metrics, max_frames=200)
    capture.start()
    capture.join(10)  # nobody reads: a live source must not wait
    frames = drain(out, timeout=1)
    assert not capture.is_alive()
    assert len(frames) <= 2 and frames[-1].index == 199
    assert metrics.snapshot().frames_dropped >= 197


def test_failing_camera_is_reconnected_with_backoff():
    source = SyntheticSource(40, live=True, fail_after=15, failed_opens=2)
    metrics = Metrics()
    out: queue.Queue = queue.Queue(maxsize=100)
    capture = CaptureThread(source, out, metrics, max_frames=40,
                            retry=RetryPolicy(initial=0.01, max_delay=0.02))
    capture.start()
    frames = drain(out)
    assert len(frames) == 40  # every frame the camera gave, before and after the failure
    assert source.opens == 4  # first open, two failed retries, the successful one
    snapshot = metrics.snapshot()
    assert snapshot.reconnects == 1
    assert capture.error is None


def test_camera_that_stays_down_is_reported():
    source = SyntheticSource(40, live=True, fail_after=5, failed_opens=100)
    metrics = Metrics()
    out: queue.Queue = queue.Queue(maxsize=100)
    capture = CaptureThread(source, out, metrics, retry=RetryPolicy(initial=0.01, max_delay=0.01, max_attempts=3))
    capture.start()
    assert len(drain(out)) == 5
    assert metrics.status == "failed"
    assert capture.error == "synthetic lost and could not be reopened"
