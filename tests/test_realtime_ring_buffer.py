"""Ring buffer: which frames a window holds, when windows come, RGB preprocessing, bounded size."""

from __future__ import annotations

import numpy as np
import pytest

from star_har.model import TemporalSampling
from star_har.model.backbone import KINETICS_MEAN, KINETICS_STD
from star_har.model.crop import person_crop
from star_har.realtime.capture import Frame
from star_har.realtime.ring_buffer import RingBuffer

SAMPLING = TemporalSampling(frames_per_window=16, window_seconds=1.6)  # one frame every 0.1 s


def frame(index: int, fps: float, size: tuple[int, int] = (48, 64), value: int = 0) -> Frame:
    return Frame(index, index / fps, np.full((*size, 3), value, np.uint8), float(index))


def keypoints(index: int) -> np.ndarray:
    kp = np.zeros((13, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = index, 2 * index, 1.0
    return kp


def push_stream(ring: RingBuffer, count: int, fps: float) -> list:
    windows = []
    for i in range(count):
        window = ring.push(frame(i, fps), keypoints(i), True)
        if window is not None:
            windows.append(window)
    return windows


@pytest.mark.parametrize("fps", [30.0, 25.0, 60.0])
def test_windows_span_the_checkpoint_sampling_whatever_the_frame_rate(fps):
    ring = RingBuffer(SAMPLING, hop=8)
    windows = push_stream(ring, int(6 * fps), fps)
    first = windows[0]
    # the first window comes once 15 intervals of history exist, and ends at the newest frame
    assert first.last_frame == int(np.ceil(1.5 * fps - 1e-6))
    for window in windows:
        assert window.keypoints.shape == (16, 13, 3) and window.frames is None
        steps = np.diff(window.timestamps)
        assert np.all(np.abs(steps - 0.1) <= 0.5 / fps + 1e-9)  # nearest frame to each 0.1 s instant
        assert window.timestamps[-1] - window.timestamps[0] == pytest.approx(1.5, abs=0.05 + 0.5 / fps)
        # keypoints travel with their frame
        np.testing.assert_array_equal(window.keypoints[:, 0, 0], window.frame_indices)
    # then exactly one window every hop frames
    assert np.all(np.diff([w.last_frame for w in windows]) == 8)


def test_slow_stream_repeats_frames_instead_of_stretching_time():
    ring = RingBuffer(SAMPLING, hop=1)
    windows = push_stream(ring, 40, fps=5.0)  # slower than the window's 10 frames per second
    window = windows[0]
    assert window.timestamps[-1] - window.timestamps[0] == pytest.approx(1.5, abs=0.2)  # +- a frame
    assert len(set(window.frame_indices.tolist())) < 16  # nearest frames repeat


def test_rgb_windows_are_the_person_crop_normalised_with_keypoints_in_its_pixels():
    ring = RingBuffer(SAMPLING, hop=4, needs_frames=True, input_size=(32, 16))
    windows = []
    for i in range(60):
        f = Frame(i, i / 30, np.zeros((48, 64, 3), np.uint8), 0.0)
        f.image[..., 2] = 255  # pure red in BGR
        window = ring.push(f, keypoints(i), True)
        if window is not None:
            windows.append(window)
    window = windows[0]
    assert window.frames.shape == (3, 16, 32, 16) and window.frames.dtype == np.float32
    expected = [(1.0 - KINETICS_MEAN[0]) / KINETICS_STD[0], -KINETICS_MEAN[1] / KINETICS_STD[1],
                -KINETICS_MEAN[2] / KINETICS_STD[2]]
    np.testing.assert_allclose(window.frames[:, 0, 16, 8], expected, rtol=1e-5)  # RGB order
    # one crop for the whole window (model.crop), keypoints mapped into it, confidence untouched
    red = np.zeros((16, 48, 64, 3), np.uint8)
    red[..., 2] = 255
    frames, kps = person_crop(red, np.stack([keypoints(i) for i in window.frame_indices]), (32, 16))
    np.testing.assert_array_equal(window.frames, frames)
    np.testing.assert_array_equal(window.keypoints, kps)
    np.testing.assert_array_equal(window.keypoints[:, 0, 2], 1.0)


def test_rgb_memory_follows_the_window_span_not_the_capacity():
    ring = RingBuffer(SAMPLING, hop=4, needs_frames=True, input_size=(32, 32))
    windows = [ring.push(frame(i, 30.0), keypoints(i), True) for i in range(300)]
    assert len(ring) == ring.capacity > 100  # sized for 120 fps
    kept = sum(entry.image is not None for entry in ring._entries)
    assert kept <= 1.5 * 30 + 2  # the 1.5 s span at 30 fps (+ the frame before it)
    assert all(w.frames.shape == (3, 16, 32, 32) for w in windows if w is not None)


def test_person_fraction_and_restart():
    ring = RingBuffer(SAMPLING, hop=4)
    windows = [ring.push(frame(i, 30), keypoints(i), i % 2 == 0) for i in range(60)]
    window = next(w for w in windows if w is not None)
    assert window.person_fraction == pytest.approx(np.mean(window.frame_indices % 2 == 0))
    # the stream restarts at time 0: old frames are dropped, no window mixes the two
    assert ring.push(frame(0, 30), keypoints(0), True) is None
    assert len(ring) == 1


def test_capacity_is_fixed():
    ring = RingBuffer(SAMPLING, hop=1, capacity=50)
    push_stream(ring, 1000, fps=30)
    assert len(ring) == 50
    with pytest.raises(ValueError, match="hop"):
        RingBuffer(SAMPLING, hop=0)


def test_a_clip_shorter_than_a_window_is_flushed_as_one_window_spread_over_it():
    ring = RingBuffer(SAMPLING, hop=8)
    assert push_stream(ring, 24, fps=30.0) == []  # 0.77 s: never spans the 1.5 s of a window
    window = ring.flush()
    # spread over the whole clip like a short training sequence, first to last frame, in order
    assert window.keypoints.shape == (16, 13, 3)
    assert window.first_frame == 0 and window.last_frame == 23
    assert np.all(np.diff(window.frame_indices) >= 1)
    np.testing.assert_array_equal(window.keypoints[:, 0, 0], window.frame_indices)
    assert ring.flush() is None  # one flush window only


def test_flush_gives_nothing_once_a_window_was_cut():
    ring = RingBuffer(SAMPLING, hop=8)
    assert push_stream(ring, 60, fps=30.0)
    assert ring.flush() is None
    ring.clear()
    assert ring.flush() is None  # nothing buffered


def test_flush_of_a_buffer_that_spans_a_window_but_was_never_cut_gives_the_newest_window():
    """A person tracked since less than a hop when the file ends: their buffer spans more than a
    window (older RGB images already released), so the flush is the regular newest window."""
    ring = RingBuffer(SAMPLING, hop=4, needs_frames=True, input_size=(32, 32))
    assert all(ring.push(frame(i, 30.0), keypoints(i), True, cut=False) is None for i in range(60))
    window = ring.flush()
    assert window.frames.shape == (3, 16, 32, 32) and window.last_frame == 59
    assert window.timestamps[-1] - window.timestamps[0] == pytest.approx(1.5, abs=0.05)
