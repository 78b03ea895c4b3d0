"""Cutting fixed-size windows out of sequences, the way the real-time ring buffer presents them.

The ring buffer shows the model ``frames_per_window`` frames spaced ``window_seconds /
frames_per_window`` apart in time. Training cuts windows with the same spacing at the source's
frame rate, so the model sees motion at the speed it will meet live. A sequence shorter than one
window is spread over the whole window instead (frames repeat), as slow motion.
"""

from __future__ import annotations

import numpy as np

from star_har.model import TemporalSampling


def _interval(fps: float, sampling: TemporalSampling, speed: float) -> float:
    """Source frames between two window frames (``speed`` > 1 plays the action faster)."""
    return sampling.frame_interval * fps * speed


def window_at(num_frames: int, fps: float, sampling: TemporalSampling, position: float,
              speed: float = 1.0) -> np.ndarray:
    """Frame indices ``(F,)`` of the window starting at ``position`` in [0, 1] of the free range.

    ``position`` 0 starts at the first frame, 1 ends at the last one.
    """
    count = sampling.frames_per_window
    step = _interval(fps, sampling, speed)
    span = step * (count - 1)
    if span >= num_frames - 1:  # too short: spread over the whole sequence, repeating frames
        return np.round(np.linspace(0, num_frames - 1, count)).astype(np.int64)
    start = position * (num_frames - 1 - span)
    return np.clip(np.round(start + step * np.arange(count)), 0, num_frames - 1).astype(np.int64)


def random_window(num_frames: int, fps: float, sampling: TemporalSampling, rng: np.random.Generator,
                  speed_range: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """A training window ``(F,)``: random start, speed drawn log-uniformly from ``speed_range``."""
    low, high = np.log(speed_range[0]), np.log(speed_range[1])
    speed = float(np.exp(rng.uniform(low, high))) if high > low else speed_range[0]
    return window_at(num_frames, fps, sampling, float(rng.uniform()), speed)


def evaluation_windows(num_frames: int, fps: float, sampling: TemporalSampling, count: int) -> np.ndarray:
    """``count`` windows ``(count, F)`` evenly spread over the sequence (one centred if count is 1)."""
    positions = [0.5] if count == 1 else np.linspace(0.0, 1.0, count)
    return np.stack([window_at(num_frames, fps, sampling, float(p)) for p in positions])


def _largest_remainder(exact: np.ndarray) -> np.ndarray:
    """Integers that sum to ``round(exact.sum())``, each within 1 of ``exact``."""
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[:int(round(exact.sum())) - int(counts.sum())]] += 1
    return counts


def balanced_repeats(groups: list, repeats: int, power: float) -> np.ndarray:
    """Training windows per sequence ``(N,)`` that sum to ``N * repeats``, a group of ``n``
    sequences (hashable keys, e.g. one class of one source) getting windows in proportion to
    ``n ** (1 - power)``.

    ``power`` 0 keeps ``repeats`` for every sequence; 1 gives every group the same windows, however
    few sequences it has (the "repeat factor" idea of class-balanced sampling). Groups are rounded
    first, then their windows spread evenly over their sequences: deterministic, the epoch keeps
    its length, and no group is more than one window off its share.
    """
    ids: dict = {}
    group = np.array([ids.setdefault(g, len(ids)) for g in groups], np.int64)
    sizes = np.bincount(group)
    weight = sizes.astype(np.float64) ** (1 - power)
    totals = _largest_remainder(len(groups) * repeats * weight / weight.sum())
    by_group = np.argsort(group, kind="stable")
    rank = np.empty(len(groups), np.int64)  # each sequence's place within its group
    rank[by_group] = np.arange(len(groups)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return totals[group] // sizes[group] + (rank < totals[group] % sizes[group])


def item_sequences(copies: np.ndarray) -> np.ndarray:
    """Sequence index of each training item, round-robin over sequences: ``copies[s]`` items of
    sequence ``s``; with equal copies, item ``i`` is sequence ``i % N``."""
    return np.concatenate([np.flatnonzero(copies > r) for r in range(int(copies.max(initial=0)))] or [np.zeros(0, np.int64)])
