"""Writing a run's results to disk: the annotated video and the JSON Lines records.

Both writers notice a failing disk and stop with one line instead of leaving damage behind:

* :class:`JsonLinesWriter` writes whole records only: a record that fails half-way is cut off
  again, so every line of the file is a complete JSON record.
* :class:`VideoRecorder` draws the overlay (:mod:`realtime.overlay`, as the GUI does) and writes
  frames off the pipeline's threads. OpenCV's ``VideoWriter`` reports no write error, so the
  recorder watches the free space of the target's disk (it stops while enough is left to finish
  the file, keeping it playable) and, once finished, reads the file's frame count back (a write
  that failed anyway is reported). The file's growth cannot be watched: the encoder buffers tens
  of kilobytes, which is hundreds of frames of a plain scene.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import threading
from pathlib import Path

from star_har.errors import InvalidInputError, StarHarError
from star_har.realtime.queues import put_blocking, put_latest

#: Free space below which recording stops, so that finishing the file (an mp4's index) still fits.
MIN_FREE_BYTES = 32 * 2**20
#: Frames between two checks of the free space.
CHECK_EVERY = 30
VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}


class WriteError(StarHarError):
    """An output could not be written (full disk, removed folder); the message is one line."""


def check_output_path(path: str | os.PathLike, option: str, overwrite: bool,
                      suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse, before anything runs, an output that would fail or destroy a file: a folder, an
    existing file without ``overwrite``, a wrong suffix, a folder that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{option} {path} is a folder; name a file")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InvalidInputError(f"{option} {path}: use one of {', '.join(suffixes)}")
    if path.is_file() and not overwrite:
        raise InvalidInputError(f"{option} {path} exists; pass --overwrite to replace it")
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{option} {path}: cannot write into {parent}")
    return path


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class JsonLinesWriter:
    """One JSON record per line to ``path`` (``"-"``: stdout); only whole records stay in the file.

    Each record is one unbuffered write, so it is on disk (a crash or a kill keeps every prediction
    made so far) or, when the write fails half-way, cut off again.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.to_stdout = str(path) == "-"
        self.path = Path(path)
        self._fd: int | None = None
        if not self.to_stdout:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.records = self._size = 0

    def write(self, record: dict) -> None:
        line = json.dumps(record) + "\n"
        if self._fd is None:
            print(line, end="", flush=True)
        else:
            data = line.encode()
            try:
                done = 0
                while done < len(data):
                    done += os.write(self._fd, data[done:])
            except OSError as exc:
                with contextlib.suppress(OSError):  # devices (/dev/full) cannot be truncated
                    os.ftruncate(self._fd, self._size)
                raise WriteError(f"cannot write {self.path} ({exc.strerror or exc}); it keeps the "
                                 f"{self.records} complete records written before") from None
            self._size += len(data)
        self.records += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class VideoRecorder(threading.Thread):
    """Draws the overlay on each :class:`~realtime.pipeline.FrameUpdate` and writes it to ``path``
    (.mp4 or .avi), off the pipeline's threads. ``put`` waits when it is behind (files) or drops
    the oldest (live). :attr:`error` is set (one line) when writing fails; :meth:`close` finishes
    the file in every case."""

    def __init__(self, path: Path, fps: float, layout: str, live: bool) -> None:
        super().__init__(name="star-har-video-writer", daemon=True)
        self.path, self.fps, self.layout, self.live = Path(path), fps, layout, live
        self.updates: queue.Queue = queue.Queue(maxsize=8)
        self.stop_event = threading.Event()
        self.frames_written = 0
        self.error: str | None = None

    def put(self, update) -> None:
        if self.error is not None:
            return
        if self.live:
            put_latest(self.updates, update)
        else:
            put_blocking(self.updates, update, self.stop_event)

    def close(self) -> None:
        """Write what is queued, then finish the file."""
        put_latest(self.updates, None)
        self.join()

    def run(self) -> None:
        import cv2

        from star_har.realtime.overlay import draw_overlay

        writer = None
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES.get(self.path.suffix.lower(), "mp4v"))
        try:
            while (update := self.updates.get()) is not None:
                image = draw_overlay(update.frame.image, update.keypoints, self.layout, update.prediction,
                                     update.metrics, copy=True, people=update.people)
                if writer is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (image.shape[1], image.shape[0]))
                    if not writer.isOpened():
                        raise WriteError(f"cannot write video {self.path}")
                writer.write(image)
                self.frames_written += 1
                if self.frames_written % CHECK_EVERY == 0 and _free_bytes(self.path.parent) < MIN_FREE_BYTES:
                    raise WriteError(f"disk almost full: recording to {self.path} stopped after "
                                     f"{self.frames_written} frames (the file stays playable)")
        except Exception as exc:  # reported by the runner
            self.error = str(exc) if isinstance(exc, WriteError) else f"video {self.path}: {exc}"
            self.stop_event.set()
            while self.updates.get() is not None:  # until close(): the pipeline must not block on a full queue
                pass
        finally:
            if writer is not None:
                writer.release()
                self._check_written(cv2)

    def _check_written(self, cv2) -> None:
        """Read the finished file's frame count back: OpenCV never says that writing failed."""
        capture = cv2.VideoCapture(str(self.path))
        on_disk = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if on_disk < self.frames_written and self.error is None:
            self.error = (f"writing {self.path} failed: {on_disk} of {self.frames_written} frames are in the file "
                          "(disk full or removed?)")
