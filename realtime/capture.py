"""Frame capture: webcams, video files, network streams and image folders behind one thread.

:func:`open_source` turns what the user typed (``0``, ``clip.mp4``, ``rtsp://...``, a folder)
into a :class:`FrameSource`; :class:`CaptureThread` reads it into a bounded queue of
:class:`Frame` and ends the stream with ``None``.

* Live sources (cameras, streams) keep only the newest frames: when the consumer falls behind the
  oldest queued frames are dropped and counted. A live source that fails is reopened with
  exponential back-off, and the state is reported through :class:`~realtime.metrics.Metrics`.
  The back-off only resets once a frame arrives, so a source that opens but delivers nothing (an
  mp4 from a server without HTTP Range support) is retried ever more slowly, then given up with a
  clear message.
* Files and folders deliver every frame, as fast as the consumer takes them or paced to their
  frame rate (``pace=True``, to replay a recording as if it were live). A URL that reports a frame
  count is a finite video, played like a file: its end is the end, not a lost connection.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from star_har.errors import MissingFileError
from star_har.realtime.config import DEFAULT_FPS
from star_har.realtime.metrics import Metrics
from star_har.realtime.queues import put_blocking, put_latest

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STREAM_TIMEOUT_MS = 5000  # network streams: opening or reading longer than this counts as a failure
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@contextmanager
def _quiet_opencv():
    """Silence OpenCV's own log while probing a source: our one-line error says it better."""
    logging_api = cv2.utils.logging
    level = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(level)


class SourceError(MissingFileError):
    """A source cannot be opened (one-line message such as ``camera 3 not found``)."""


@dataclass(frozen=True)
class Frame:
    """One captured image.

    index: position in the stream, 0-based (frames dropped later keep their numbers).
    timestamp: seconds on the stream's clock: media time for files and folders, time since the
        capture started for live sources. Windows are cut on this clock.
    image: ``(H, W, 3)`` uint8, BGR (OpenCV order).
    captured_at: ``time.perf_counter()`` when the frame was read, for latency measurements.
    """

    index: int
    timestamp: float
    image: np.ndarray
    captured_at: float


class FrameSource(ABC):
    """Something frames are read from. ``open`` raises :class:`SourceError`; ``read`` returns None
    at the end of a file or when a live source stops delivering."""

    #: True for cameras and network streams: newest frames matter, failures are retried.
    live: bool = False
    #: What to call the source in messages.
    name: str = ""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray | None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    def fps(self) -> float | None:
        """Nominal frame rate, when the source knows it."""
        return None


class VideoSource(FrameSource):
    """A webcam (``int`` index), a video file or a stream URL read by ``cv2.VideoCapture``."""

    def __init__(self, target: int | str) -> None:
        self.target = target
        self.url = isinstance(target, str) and bool(_URL.match(target))
        self.live = isinstance(target, int) or self.url
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self._capture: cv2.VideoCapture | None = None
        self._fps: float | None = None

    def open(self) -> None:
        self.close()
        with _quiet_opencv():
            if self.url:  # a stalled stream must fail, not hang
                capture = cv2.VideoCapture(self.target, cv2.CAP_ANY, [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
            else:
                capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            if isinstance(self.target, int):
                raise SourceError(f"camera {self.target} not found")
            kind = "stream" if self.live else "video"
            raise SourceError(f"cannot open {kind}: {self.target}")
        if self.url and capture.get(cv2.CAP_PROP_FRAME_COUNT) > 0:  # a video file served over HTTP
            self.live = False
        if self.live:  # no backlog inside the driver: the newest frame is the one we want
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if 1.0 <= fps <= 1000.0 else None  # cameras and streams often say 0

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            return None
        ok, image = self._capture.read()
        return image if ok and image is not None else None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    @property
    def fps(self) -> float | None:
        """Frame rate reported when the source was last opened."""
        return self._fps


class ImageFolderSource(FrameSource):
    """The images of a folder in name order, as frames at ``fps``. Unreadable files are skipped."""

    def __init__(self, folder: str | Path, fps: float = DEFAULT_FPS) -> None:
        self.folder = Path(folder)
        self.name = str(folder)
        self._fps = fps
        self._paths: list[Path] = []
        self._next = 0

    def open(self) -> None:
        self._paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder: {self.folder}")
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image
            log.warning("skipping unreadable image %s", path)
        return None

    def close(self) -> None:
        self._paths = []

    @property
    def fps(self) -> float | None:
        return self._fps


def open_source(spec: str | int, fps: float | None = None) -> FrameSource:
    """The source ``spec`` names, opened once to check it works (then closed again).

    spec: a webcam index (``0`` or ``"0"``), a video file, an ``rtsp://`` / ``http(s)://`` URL or a
        folder of images. fps: frame rate of an image folder (default 30).
    Raises :class:`SourceError` with a one-line message when it cannot be opened.
    """
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        source: FrameSource = VideoSource(int(text))
    elif _URL.match(text):
        source = VideoSource(text)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            source = ImageFolderSource(path, fps or DEFAULT_FPS)
        elif path.is_file():
            source = VideoSource(str(path))
        else:
            raise SourceError(f"video not found: {text}")
    source.open()
    try:
        if isinstance(source, VideoSource) and not isinstance(source.target, int) and source.read() is None:
            # cameras may take a while to deliver; a file or stream that opens must also play
            raise SourceError(f"{'stream' if source.url else 'video'} opens but delivers no frame "
                              f"(damaged, unsupported codec, or a server without HTTP Range support): {text}")
    finally:
        source.close()
    return source


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off for reopening a failed live source: ``initial`` s doubling up to ``max_delay``.

    max_attempts: reopen attempts in a row before giving up (None: keep trying until stopped).
    max_empty_opens: reopens in a row that succeed but deliver no frame before giving up.
    """

    initial: float = 0.5
    max_delay: float = 5.0
    max_attempts: int | None = None
    max_empty_opens: int = 5

    def delays(self):
        delay, attempt = self.initial, 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield delay
            delay, attempt = min(delay * 2, self.max_delay), attempt + 1


class CaptureThread(threading.Thread):
    """Reads ``source`` into ``out`` (a bounded queue of :class:`Frame`, then ``None`` at the end).

    pace: deliver file frames no faster than their timestamps (live sources are paced anyway).
    max_frames: stop after this many frames. The thread ends when the source ends, fails for
    good, or :meth:`stop` is called; it always closes the source and puts the ``None`` mark.
    """

    def __init__(self, source: FrameSource, out: queue.Queue, metrics: Metrics | None = None, *,
                 pace: bool = False, max_frames: int | None = None,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        super().__init__(name="star-har-capture", daemon=True)
        self.source, self.out = source, out
        self.metrics = metrics or Metrics()
        self.pace, self.max_frames, self.retry = pace, max_frames, retry
        self.stop_event = threading.Event()
        self.error: str | None = None
        self._delays = None  # the back-off in progress; reset once a frame arrives
        self._attempt = 0

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # report, never die silently: the pipeline reads `error`
            log.exception("capture failed")
            self.error = f"capture failed: {exc}"
            self.metrics.set_status("failed", self.error)
        finally:
            self.source.close()
            self._deliver(None)

    def _run(self) -> None:
        self.source.open()
        self.metrics.set_status("running")
        fps = self.source.fps or DEFAULT_FPS
        start = time.perf_counter()
        index = 0
        empty_opens = 0
        while not self.stop_event.is_set() and (self.max_frames is None or index < self.max_frames):
            image = self.source.read()
            if image is None:
                if not self.source.live:
                    self.metrics.set_status("ended")
                    return
                empty_opens = empty_opens + 1 if self._delays is not None else 0
                if empty_opens >= self.retry.max_empty_opens:
                    self._fail(f"{self.source.name} opens but delivers no frame ({empty_opens} reopens; "
                               "a server without HTTP Range support, or a damaged stream)")
                    return
                if not self._reconnect():
                    return
                continue
            self._delays, self._attempt = None, 0
            now = time.perf_counter()
            timestamp = now - start if self.source.live else index / fps
            if self.pace and not self.source.live and timestamp > now - start:
                self.stop_event.wait(timestamp - (now - start))
                now = time.perf_counter()
            self.metrics.frame_captured(now)
            self._deliver(Frame(index, timestamp, image, now))
            index += 1
        if not self.stop_event.is_set():
            self.metrics.set_status("ended", f"reached --max-frames {self.max_frames}")

    def _deliver(self, frame: Frame | None) -> None:
        if self.source.live or (frame is None and self.stop_event.is_set()):
            self.metrics.increment("frames_dropped", put_latest(self.out, frame))
        else:
            put_blocking(self.out, frame, self.stop_event)

    def _reconnect(self) -> bool:
        """Reopen a live source with back-off; False when it stays down (or we are stopping).

        The back-off continues where it was until a frame arrives (see :meth:`_run`)."""
        if self._delays is None:
            log.warning("%s stopped delivering frames; reconnecting", self.source.name)
            self._delays = self.retry.delays()
        for delay in self._delays:
            self._attempt += 1
            if not self._wait_counting_down(delay):
                return False
            try:
                self.source.open()
            except SourceError as exc:
                log.info("reconnect attempt %d failed: %s", self._attempt, exc)
                continue
            log.info("%s reopened (attempt %d)", self.source.name, self._attempt)
            self.metrics.increment("reconnects")
            self.metrics.set_status("running")
            return True
        self._fail(f"{self.source.name} lost and could not be reopened ({self._attempt} attempts)")
        return False

    def _wait_counting_down(self, delay: float) -> bool:
        """Wait ``delay`` s, keeping the status message's countdown current; False when stopped."""
        deadline = time.perf_counter() + delay
        while (left := deadline - time.perf_counter()) > 0:
            self.metrics.set_status("reconnecting",
                                    f"{self.source.name} lost, retry {self._attempt} in {left:.1f} s")
            if self.stop_event.wait(min(left, 0.1)):
                return False
        self.metrics.set_status("reconnecting", f"{self.source.name} lost, retry {self._attempt}: opening")
        return True

    def _fail(self, message: str) -> None:
        self.error = message
        self.metrics.set_status("failed", message)
