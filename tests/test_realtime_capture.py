"""Capture: real decoding, source errors, live dropping, reconnecting a failing camera."""

from __future__ import annotations

import functools
import http.server
import io
import queue
import threading
import time
from pathlib import Path

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
    assert capture.error == "synthetic lost and could not be reopened (3 attempts)"


def test_source_that_opens_but_delivers_nothing_backs_off_then_gives_up():
    """Such a source once reopened twice a second forever (an mp4 from a server without Range)."""
    source = SyntheticSource(5, live=True)  # opens every time, but no frame after the fifth
    metrics = Metrics()
    out: queue.Queue = queue.Queue(maxsize=100)
    retry = RetryPolicy(initial=0.02, max_delay=1.0, max_empty_opens=4)
    capture = CaptureThread(source, out, metrics, retry=retry)
    start = time.perf_counter()
    capture.start()
    assert len(drain(out)) == 5
    # the back-off kept growing across the empty reopens: 0.02 + 0.04 + 0.08 + 0.16 s
    assert time.perf_counter() - start >= 0.3
    assert source.opens == 1 + 4 and metrics.status == "failed"
    assert "opens but delivers no frame" in capture.error


def test_reconnect_countdown_keeps_moving():
    """The status once froze at the first 'retry 1 in 0.5 s' for the whole outage."""
    source = SyntheticSource(40, live=True, fail_after=2, failed_opens=100)
    metrics = Metrics()
    capture = CaptureThread(source, queue.Queue(maxsize=100), metrics, retry=RetryPolicy(initial=0.4, max_delay=0.4))
    capture.start()
    seen = set()
    deadline = time.perf_counter() + 3
    while time.perf_counter() < deadline and not any("retry 3" in m for m in seen):
        seen.add(metrics.snapshot().message)
        time.sleep(0.02)
    capture.stop()
    capture.join(5)
    assert any("retry 1 in 0.4 s" in m for m in seen) and any("retry 1 in 0.1 s" in m for m in seen)
    assert any("retry 3" in m for m in seen)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with or without HTTP Range support (``range_support`` on the server)."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        header = self.headers.get("Range")
        if not (self.server.range_support and header and header.startswith("bytes=")):
            return super().send_head()
        data = Path(self.translate_path(self.path)).read_bytes()
        first, _, last = header[6:].partition("-")
        start, end = int(first or 0), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start:end + 1])


@pytest.fixture(params=[True, False], ids=["range", "no-range"])
def video_url(request, tai_chi_video):
    handler = functools.partial(_RangeHandler, directory=str(tai_chi_video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # local only
    server.range_support = request.param
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{tai_chi_video.name}", request.param
    server.shutdown()
    server.server_close()


def test_finite_video_over_http_ends_instead_of_reconnecting(video_url):
    url, range_support = video_url
    if not range_support:  # opens, reports 300 frames, delivers none: said at once, in one line
        with pytest.raises(SourceError, match="opens but delivers no frame"):
            open_source(url)
        return
    source = open_source(url)
    assert not source.live  # a finite video: every frame, and its end is the end
    out: queue.Queue = queue.Queue(maxsize=4)
    metrics = Metrics()
    capture = CaptureThread(source, out, metrics)
    capture.start()
    assert len(drain(out)) == 300
    capture.join(5)
    assert metrics.status == "ended" and metrics.snapshot().reconnects == 0 and capture.error is None


def test_capture_rate_falls_while_the_camera_is_gone():
    """The status bar once showed 30 fps for as long as the camera was away."""
    metrics = Metrics()
    now = time.perf_counter()
    for i in range(30):
        metrics.frame_captured(now - 0.05 - (29 - i) / 30)
    assert metrics.snapshot().capture_fps == pytest.approx(30, rel=0.1)  # frames still arriving
    metrics = Metrics()
    for i in range(30):
        metrics.frame_captured(now - 10 - (29 - i) / 30)  # the last frame came 10 s ago
    assert metrics.snapshot().capture_fps < 3
