"""The two ways a stage hands items to the next one through a bounded :class:`queue.Queue`.

Live sources must never wait for a slow consumer (the newest item matters, old ones are stale),
while files and recorded streams must not lose anything. Either way the queue stays bounded.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

# How often a blocked producer re-checks whether the pipeline is stopping.
_POLL_SECONDS = 0.05


def put_latest(q: queue.Queue, item: Any) -> int:
    """Put ``item``, dropping the oldest queued items while full; returns how many were dropped."""
    dropped = 0
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                q.get_nowait()
                dropped += 1
            except queue.Empty:  # a consumer emptied it in between: try again
                pass


def put_blocking(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item``, waiting while the queue is full; gives up (returns False) once ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def get_until_stopped(q: queue.Queue, stop: threading.Event) -> Any:
    """Next item of ``q``, or ``None`` (the end-of-stream mark) once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
    return None
