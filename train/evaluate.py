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
from star_har.train.datasets import load_sequences
from star_har.train.datasets.base import stratified_split
from star_har.train.engine import predict_windows
from star_har.train.metrics import plot_confusion, summarize
from star_har.train.windows import WindowDataset

log = logging.getLogger(__name__)


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, kind: str = "penn_action",
                        protocol: str | None = None, pose_model: str | None = None, split: str = "all",
                        windows: int = 5, batch_size: int = 64, output: str | Path = "runs/eval",
                        val_fraction: float = 0.15, split_seed: int = 0) -> dict[str, Any]:
    """Evaluate and write ``report.json`` and ``confusion.png`` into ``output``.

    ``split``: ``all`` sequences, or the ``train`` / ``val`` part of the stratified hold-out that
    training used (same ``val_fraction`` and ``split_seed``; a dataset's own split wins).
    Sequences of classes the checkpoint does not know raise ValueError.
    """
    ck = load_checkpoint(checkpoint)
    data = {"kind": kind, "protocol": protocol or "xsub", "pose_model": pose_model}
    sequences = load_sequences(data, str(data_root))
    if split != "all":
        if any(s.split in ("val", "test") for s in sequences):
            held = [s for s in sequences if s.split in ("val", "test")]
            kept = [s for s in sequences if s.split not in ("val", "test")]
        else:
            kept, held = stratified_split(sequences, val_fraction, split_seed)
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
                   f"{Path(checkpoint).name} on {Path(data_root).name}, {split} (top-1 {report['top1']:.3f})")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
