"""Calibrating and measuring open-set behaviour (:class:`~model.openset.OpenSet`) on held-out data.

Calibration uses in-vocabulary validation windows only (held-out subjects): the temperature
minimises their negative log-likelihood, then the threshold is the highest one that still shows
``keep`` of the windows the model gets right. Out-of-vocabulary windows are never used to choose
it, so measuring them afterwards (:func:`open_set_report`) is an honest test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from star_har.errors import InvalidInputError
from star_har.model.openset import BACKGROUND, OpenSet

TEMPERATURES = np.geomspace(0.25, 8.0, 61)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (from a log-spaced grid) with the lowest validation NLL."""
    def nll(temperature: float) -> float:
        probs = OpenSet(temperature).probabilities(logits)
        return float(-np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean())

    return float(min(TEMPERATURES, key=nll))


def calibrate(logits: np.ndarray, labels: np.ndarray, class_names: list[str], keep: float = 0.95) -> OpenSet:
    """An :class:`OpenSet` from in-vocabulary validation windows ``(N, K)`` logits and labels."""
    temperature = fit_temperature(logits, labels)
    probs = OpenSet(temperature).probabilities(logits)
    best = probs.argmax(axis=1)
    right = (best == labels) & (np.asarray(class_names, dtype=object)[best] != BACKGROUND)
    scores = np.sort(probs.max(axis=1)[right])[::-1]
    if len(scores) == 0:
        return OpenSet(temperature, 1.0)
    # the keep-th quantile of the right windows' confidences: lower would show more guesses
    threshold = scores[min(len(scores) - 1, int(np.ceil(keep * len(scores))) - 1)]
    return OpenSet(temperature, float(threshold))


def open_set_report(known_logits: np.ndarray, known_labels: np.ndarray, unknown_logits: np.ndarray,
                    class_names: list[str], open_set: OpenSet) -> dict[str, float]:
    """Per window: share of in-vocabulary windows shown and right, share of out-of-vocabulary
    windows shown as a confident action (NaN where there are none). Windows labelled
    :data:`BACKGROUND` are the trained kind of out-of-vocabulary: reported on their own."""
    def share(mask: np.ndarray) -> float:
        return float(mask.mean()) if len(mask) else float("nan")

    def confident(logits: np.ndarray) -> np.ndarray:
        return open_set.confident(open_set.probabilities(logits), class_names) if len(logits) else np.zeros(0, bool)

    background = np.asarray(class_names, dtype=object)[known_labels] == BACKGROUND
    shown_and_right = confident(known_logits) & (known_logits.argmax(axis=1) == known_labels)
    return {"in_vocabulary_shown_and_right": share(shown_and_right[~background]),
            "in_vocabulary_windows": int((~background).sum()),
            "background_confident": share(confident(known_logits[background])),
            "background_windows": int(background.sum()),
            "out_of_vocabulary_confident": share(confident(unknown_logits)),
            "out_of_vocabulary_windows": int(len(unknown_logits))}


def calibrate_checkpoint(checkpoint: str | Path, data: dict[str, Any], keep: float = 0.95,
                         batch_size: int = 64, progress: bool = True) -> dict[str, Any]:
    """Calibrate ``checkpoint`` on the validation split of a config ``data`` section (the split
    training used) and store the result in its meta (``open_set``). Returns that entry plus the
    in-vocabulary measurement."""
    import torch

    from star_har.model import load_checkpoint, save_checkpoint
    from star_har.train.datasets import load_splits
    from star_har.train.engine import predict_windows
    from star_har.train.windows import WindowDataset

    ck = load_checkpoint(checkpoint)
    _, val, _ = load_splits(data)
    val = [s for s in val if s.label in ck.class_names]
    if not val:
        raise InvalidInputError("no validation sequence of the checkpoint's classes to calibrate on")
    net = ck.build()
    dataset = WindowDataset.for_checkpoint(ck, val, int(data["eval_windows"]))
    logits, labels, _ = predict_windows(net, dataset, batch_size, torch.device("cpu"), progress=progress)
    open_set = calibrate(logits, labels, ck.class_names, keep)
    entry = {**open_set.to_meta(), "keep": keep, "windows": int(len(labels)),
             "sequences": len(val), "data": data.get("root") or sorted(data.get("sources") or {})}
    save_checkpoint(checkpoint, net, model_name=ck.model_name, class_names=ck.class_names,
                    joint_layout=ck.joint_layout, sampling=ck.sampling, meta={**ck.meta, "open_set": entry})
    return {**entry, **open_set_report(logits, labels, np.zeros((0, len(ck.class_names))), ck.class_names, open_set)}
