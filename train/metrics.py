"""Accuracy, confusion matrices and the PNG plots of a training run (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of ``scores`` (N, K) whose label is among the ``k`` highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    totals = matrix.sum(axis=1)
    return np.divide(np.diag(matrix), totals, out=np.full(len(matrix), np.nan), where=totals > 0)


def summarize(window_scores: np.ndarray, window_labels: np.ndarray, window_sequences: np.ndarray,
              class_names: list[str]) -> dict:
    """Accuracy three ways, each under its own key:

    * ``centred_window_top1``: one window per video, the middle one of its windows (the centred
      window when, as ``star-har eval`` does, an odd number is spread over the video);
    * ``all_windows_top1`` / ``_top5``: the mean over every sampled window;
    * ``video_top1`` / ``_top5``: one decision per video from its windows' averaged softmax.

    window_scores: (N, K) logits of N windows in order; window_labels, window_sequences: (N,).
    """
    probs = np.exp(window_scores - window_scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    sequences = np.unique(window_sequences)
    members = [np.flatnonzero(window_sequences == s) for s in sequences]   # each video's windows, in order
    seq_probs = np.stack([probs[m].mean(axis=0) for m in members]) if members \
        else np.zeros((0, len(class_names)))
    seq_labels = np.array([window_labels[m[0]] for m in members], dtype=np.int64)
    middle = np.array([m[len(m) // 2] for m in members], dtype=np.int64)
    matrix = confusion_matrix(seq_probs.argmax(axis=1), seq_labels, len(class_names))
    return {
        "windows": int(len(window_labels)),
        "sequences": int(len(sequences)),
        "centred_window_top1": topk_accuracy(probs[middle], window_labels[middle], 1),
        "all_windows_top1": topk_accuracy(probs, window_labels, 1),
        "all_windows_top5": topk_accuracy(probs, window_labels, 5),
        "video_top1": topk_accuracy(seq_probs, seq_labels, 1),
        "video_top5": topk_accuracy(seq_probs, seq_labels, 5),
        "per_class": {name: (None if np.isnan(acc) else float(acc))
                      for name, acc in zip(class_names, per_class_accuracy(matrix))},
        "confusion": matrix.tolist(),
    }


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    for i in ticks:
        for j in ticks:
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss and accuracy per epoch, training vs validation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss_ax.plot(epochs, [h.get(key, np.nan) for h in history], label=label)
    for key, label in (("train_acc", "train (window)"), ("val_window_top1", "validation (window)"),
                       ("val_top1", "validation (multi-window)")):
        acc_ax.plot(epochs, [h.get(key, np.nan) for h in history], label=label)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    loss_ax.legend()
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
