"""Calibrating and measuring open-set behaviour (:class:`~model.openset.OpenSet`) on held-out data.

Calibration uses in-vocabulary windows only: the novelty head's class means and covariance come
from the training split's windows; on the validation split (held-out subjects) the temperature
minimises the negative log-likelihood, then the novelty limit is the lowest one that still shows
``novelty_keep`` of the windows the model gets right (models without a novelty head get a
probability threshold that keeps ``keep`` of them instead). A model trained on every subject has
no held-out windows: :func:`calibrate_like` transfers a validated calibration of its recipe
through the share of right training windows that calibration kept. Out-of-vocabulary windows are
never used to choose either, so measuring them afterwards (:func:`open_set_report`) is an honest
test.
"""

from __future__ import annotations

import dataclasses
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


def keep_limit(values: np.ndarray, keep: float) -> float:
    """The limit that keeps ``keep`` of ``values``, sorted best first (the value at that rank)."""
    return float(values[min(len(values) - 1, int(np.ceil(keep * len(values))) - 1)])


def calibrate(logits: np.ndarray, labels: np.ndarray, class_names: list[str], keep: float = 0.95,
              novelty: np.ndarray | None = None, novelty_keep: float = 0.9) -> OpenSet:
    """An :class:`OpenSet` from in-vocabulary validation windows ``(N, K)`` logits and labels
    (and their ``(N,)`` novelty when the model has a fitted novelty head)."""
    temperature = fit_temperature(logits, labels)
    return _limit_keeping(logits, labels, class_names, temperature, novelty_keep if novelty is not None else keep,
                          novelty)


def _limit_keeping(logits: np.ndarray, labels: np.ndarray, class_names: list[str], temperature: float,
                   share: float, novelty: np.ndarray | None) -> OpenSet:
    """The :class:`OpenSet` at ``temperature`` that still shows ``share`` of the right windows."""
    right = _right(logits, labels, class_names)
    if not right.any():
        return OpenSet(temperature, 1.0)
    if novelty is not None:  # the novelty limit decides; a probability threshold would only lose right windows
        return OpenSet(temperature, 0.0, keep_limit(np.sort(novelty[right]), share))
    # the share-th quantile of the right windows' confidences: lower would show more guesses
    confidence = OpenSet(temperature).probabilities(logits).max(axis=1)
    return OpenSet(temperature, keep_limit(np.sort(confidence[right])[::-1], share))


def open_set_report(known_logits: np.ndarray, known_labels: np.ndarray, unknown_logits: np.ndarray,
                    class_names: list[str], open_set: OpenSet, known_novelty: np.ndarray | None = None,
                    unknown_novelty: np.ndarray | None = None) -> dict[str, float]:
    """Per window: share of in-vocabulary windows shown and right, share of out-of-vocabulary
    windows shown as a confident action (NaN where there are none). Windows labelled
    :data:`BACKGROUND` are the trained kind of out-of-vocabulary: reported on their own."""
    def share(mask: np.ndarray) -> float:
        return float(mask.mean()) if len(mask) else float("nan")

    def confident(logits: np.ndarray, novelty: np.ndarray | None) -> np.ndarray:
        if not len(logits):
            return np.zeros(0, bool)
        return open_set.confident(open_set.probabilities(logits), class_names, novelty)

    background = np.asarray(class_names, dtype=object)[known_labels] == BACKGROUND
    known = confident(known_logits, known_novelty)
    shown_and_right = known & (known_logits.argmax(axis=1) == known_labels)
    return {"in_vocabulary_shown_and_right": share(shown_and_right[~background]),
            "in_vocabulary_windows": int((~background).sum()),
            "background_confident": share(known[background]),
            "background_windows": int(background.sum()),
            "out_of_vocabulary_confident": share(confident(unknown_logits, unknown_novelty)),
            "out_of_vocabulary_windows": int(len(unknown_logits))}


def calibrate_checkpoint(checkpoint: str | Path, data: dict[str, Any], keep: float = 0.95,
                         novelty_keep: float = 0.9, batch_size: int = 64, progress: bool = True,
                         flip_test: bool | None = None, like: str | Path | None = None) -> dict[str, Any]:
    """Calibrate ``checkpoint`` on the split of a config ``data`` section that training used: fit
    its novelty head to the training windows (models that have one: STAR), then the temperature
    and the novelty limit (or the probability threshold) on the validation windows, and store them
    (``meta["open_set"]``, the head's statistics in the weights). Returns that entry plus the
    in-vocabulary measurement. ``flip_test`` switches the test-time flip on or off in the written
    checkpoint (None: as it is) before calibrating, since it changes the scores.

    ``like``: a checkpoint of the same recipe calibrated on held-out subjects, for a model trained
    on every subject (nothing held out to calibrate on). Windows a network was trained on score as
    more familiar than new people's, so their quantile cannot stand in for the held-out one; the
    reference records which share of its right *training* windows its limit kept
    (``training_kept``), and this model's limit keeps the same share of its own, with the
    reference's temperature."""
    import torch

    from star_har.model import load_checkpoint, save_checkpoint
    from star_har.model.registry import constructor_parameters
    from star_har.train.datasets import load_splits
    from star_har.train.engine import window_outputs, with_test_flip
    from star_har.train.windows import WindowDataset

    ck = load_checkpoint(checkpoint)
    ck = dataclasses.replace(ck, hparams=with_test_flip(ck.model_name, ck.hparams, ck.class_names, flip_test))
    train, val, _ = load_splits(data)
    train, val = ([s for s in part if s.label in ck.class_names] for part in (train, val))
    reference = _reference_calibration(like) if like is not None else None
    if reference is None and not val:
        raise InvalidInputError("no validation sequence of the checkpoint's classes to calibrate on (a model "
                                "trained on every subject: calibrate --like a validated run of its recipe)")
    novelty = "novelty_head" in constructor_parameters(ck.model_name) and bool(train)
    if reference is not None and not train:
        raise InvalidInputError("no training sequence of the checkpoint's classes to calibrate on")
    windows, cpu = int(data["eval_windows"]), torch.device("cpu")
    net = dataclasses.replace(ck, hparams={**ck.hparams, "novelty_head": True}).build(strict=False) if novelty \
        else ck.build()
    seen = window_outputs(net, WindowDataset.for_checkpoint(ck, train, windows), batch_size, cpu,
                          progress=progress, features=novelty)
    if novelty:  # the head's statistics are (re)fitted: a head it may already have is replaced
        features = torch.from_numpy(seen["features"])
        net.novelty_head.fit(features, torch.from_numpy(seen["labels"]))
        with torch.no_grad():
            seen["novelty"] = net.novelty_head(features).numpy()
    score = seen["novelty"] if novelty else None
    if reference is None:
        held = window_outputs(net, WindowDataset.for_checkpoint(ck, val, windows), batch_size, cpu, progress=progress)
        open_set = calibrate(held["logits"], held["labels"], ck.class_names, keep,
                             held["novelty"] if novelty else None, novelty_keep)
        measured, sequences = held, len(val)
    else:
        open_set = calibrate_like(seen["logits"], seen["labels"], ck.class_names, reference, score)
        measured, sequences = seen, len(train)
    entry = {**open_set.to_meta(), "keep": keep, "novelty_keep": novelty_keep if novelty else None,
             "windows": int(len(measured["labels"])), "sequences": sequences,
             "novelty_fit_windows": int(len(seen["labels"])) if novelty else 0,
             "training_kept": kept_share(seen["logits"], seen["labels"], ck.class_names, open_set, score)
                             if train else None,
             "data": data.get("root") or sorted(data.get("sources") or {}),
             **({"like": str(like)} if reference is not None else {})}
    save_checkpoint(checkpoint, net, **ck.header, meta={**ck.meta, "open_set": entry})
    return {**entry, **open_set_report(measured["logits"], measured["labels"], np.zeros((0, len(ck.class_names))),
                                       ck.class_names, open_set, measured["novelty"])}


def _right(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> np.ndarray:
    best = logits.argmax(axis=1)
    return (best == labels) & (np.asarray(class_names, dtype=object)[best] != BACKGROUND)


def kept_share(logits: np.ndarray, labels: np.ndarray, class_names: list[str], open_set: OpenSet,
               novelty: np.ndarray | None) -> float | None:
    """Share of the right windows ``(N, K)`` that ``open_set`` shows (None: no right window)."""
    right = _right(logits, labels, class_names)
    if not right.any():
        return None
    shown = open_set.confident(open_set.probabilities(logits), class_names, novelty)
    return float(shown[right].mean())


def calibrate_like(logits: np.ndarray, labels: np.ndarray, class_names: list[str], reference: dict[str, Any],
                   novelty: np.ndarray | None = None) -> OpenSet:
    """An :class:`OpenSet` from a network's own *training* windows that keeps the share
    ``reference["training_kept"]`` of the right ones, as a validated calibration of the same
    recipe did, at that calibration's temperature."""
    return _limit_keeping(logits, labels, class_names, float(reference["temperature"]),
                          float(reference["training_kept"]), novelty)


def _reference_calibration(like: str | Path) -> dict[str, Any]:
    from star_har.model import load_checkpoint

    entry = load_checkpoint(like).meta.get("open_set") or {}
    if entry.get("training_kept") is None or entry.get("like"):
        raise InvalidInputError(f"--like {like}: it records no calibration on held-out subjects with the share "
                                "of training windows it keeps; calibrate it on its validation split first")
    return entry
