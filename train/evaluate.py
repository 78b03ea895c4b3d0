"""``star-har eval``: a checkpoint on a dataset, with the windows the real-time engine would see."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star_har.errors import InvalidInputError
from star_har.model import load_checkpoint
from star_har.train.config import DataConfig
from star_har.train.datasets import load_sequences, load_splits
from star_har.train.engine import predict_windows
from star_har.train.metrics import plot_confusion, summarize
from star_har.train.windows import WindowDataset

log = logging.getLogger(__name__)


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, kind: str = "penn_action",
                        protocol: str | None = None, pose_model: str | None = None, split: str = "all",
                        windows: int = 5, batch_size: int = 64, output: str | Path = "runs/eval",
                        val_fraction: float = 0.15, split_seed: int = 0) -> dict[str, Any]:
    """Evaluate and write ``report.json`` and ``confusion.png`` into ``output``.

    ``split``: ``all`` sequences, or the ``train`` / ``val`` part of the hold-out that training
    used: the same rule (:func:`~star_har.train.datasets.load_splits`) with the same
    ``val_fraction`` and ``split_seed``. Unreadable files are skipped and counted in the log, not
    fatal. Sequences of classes the checkpoint does not know raise ValueError.
    """
    ck = load_checkpoint(checkpoint)
    data = DataConfig(kind=kind, root=str(data_root), protocol=protocol or "xsub", pose_model=pose_model,
                      val_fraction=val_fraction, split_seed=split_seed).model_dump()
    if split == "all":
        sequences = load_sequences(data, str(data_root), skip_corrupt=True)
    else:
        kept, held, _ = load_splits(data, skip_corrupt=True)
        sequences = held if split == "val" else kept
    if not sequences:
        raise InvalidInputError(f"no sequences to evaluate in {data_root} (split {split})")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = ck.build().to(device)
    dataset = WindowDataset(sequences, ck.class_names, ck.joint_layout, ck.sampling, None,
                            windows_per_sequence=windows, modality=ck.hparams.get("modality", "pose"))
    scores, labels, seq_index = predict_windows(net, dataset, batch_size, device)
    report = summarize(scores, labels, seq_index, ck.class_names)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report.update({"checkpoint": str(checkpoint), "data": str(data_root), "kind": kind, "split": split,
                   "windows_per_sequence": windows, "json": str(out / "report.json"),
                   "confusion_png": str(out / "confusion.png")})
    plot_confusion(np.array(report["confusion"]), ck.class_names, out / "confusion.png",
                   f"{Path(checkpoint).name} on {Path(data_root).name}, {split} (video top-1 {report['video_top1']:.3f})")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
