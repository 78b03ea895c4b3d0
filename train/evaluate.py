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
from star_har.model.openset import OpenSet
from star_har.train.config import DataConfig
from star_har.train.datasets import load_sequences, load_splits
from star_har.train.engine import window_outputs
from star_har.train.metrics import plot_confusion, summarize
from star_har.train.openset import open_set_report
from star_har.train.windows import WindowDataset

log = logging.getLogger(__name__)


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path | None = None, kind: str = "penn_action",
                        protocol: str | None = None, pose_model: str | None = None, split: str = "all",
                        windows: int = 5, batch_size: int = 64, output: str | Path = "runs/eval",
                        val_fraction: float = 0.15, split_seed: int = 0, data: dict[str, Any] | None = None,
                        out_of_vocabulary: bool = False, skip_classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Evaluate and write ``report.json`` and ``confusion.png`` into ``output``.

    ``split``: ``all`` sequences, or the ``train`` / ``val`` part of the hold-out that training
    used: the same rule (:func:`~star_har.train.datasets.load_splits`) with the same
    ``val_fraction`` and ``split_seed``. ``data``: a config's ``data`` section instead of
    ``data_root``/``kind`` (its own split rule: held-out subjects, several sources ...). Unreadable
    files are skipped and counted in the log, not fatal. ``skip_classes`` are left out.

    Sequences of classes the checkpoint does not know raise ValueError, unless
    ``out_of_vocabulary``: then their windows measure the open-set behaviour (the share shown as a
    confident action, under the checkpoint's calibration). Sequences from several sources (an
    everyday config) are also reported per source.
    """
    ck = load_checkpoint(checkpoint)
    if data is None:
        data = DataConfig(kind=kind, root=str(data_root), protocol=protocol or "xsub", pose_model=pose_model,
                          val_fraction=val_fraction, split_seed=split_seed).model_dump()
    where = data.get("root") or ", ".join(data.get("sources") or ())
    if split == "all":
        sequences = load_sequences(data, data.get("root"), skip_corrupt=True)
    else:
        kept, held, _ = load_splits(data, skip_corrupt=True)
        sequences = held if split == "val" else kept
    sequences = [s for s in sequences if s.label not in skip_classes]
    known = [s for s in sequences if s.label in ck.class_names or not out_of_vocabulary]
    unknown = [s for s in sequences if s.label not in ck.class_names and out_of_vocabulary]
    if not sequences:
        raise InvalidInputError(f"no sequences to evaluate in {where} (split {split})")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = ck.build().to(device)

    def predict(members: list, class_names: list[str]) -> dict[str, np.ndarray]:
        if not members:
            return {"logits": np.zeros((0, len(ck.class_names))), "labels": np.zeros(0, np.int64),
                    "sequences": np.zeros(0, np.int64), "novelty": np.zeros(0)}
        return window_outputs(net, WindowDataset.for_checkpoint(ck, members, windows, class_names), batch_size, device)

    predicted = predict(known, ck.class_names)
    scores, labels, seq_index = predicted["logits"], predicted["labels"], predicted["sequences"]
    report = summarize(scores, labels, seq_index, ck.class_names)
    sources = np.array([s.source for s in known], dtype=object)[seq_index]
    if len(set(sources)) > 1:
        report["per_source"] = {str(source): summarize(scores[sources == source], labels[sources == source],
                                                       seq_index[sources == source], ck.class_names)
                                for source in sorted(set(sources))}
    unknown_predicted = predict(unknown, sorted({s.label for s in unknown}))
    open_set = OpenSet.from_meta(ck.meta)
    report["open_set"] = {"calibrated": open_set is not None,
                          **open_set_report(scores, labels, unknown_predicted["logits"], ck.class_names,
                                            open_set or OpenSet(), predicted["novelty"], unknown_predicted["novelty"]),
                          "out_of_vocabulary_classes": sorted({s.label for s in unknown})}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report.update({"checkpoint": str(checkpoint), "data": where, "kind": data["kind"], "split": split,
                   "windows_per_sequence": windows, "json": str(out / "report.json")})
    if known:
        report["confusion_png"] = str(out / "confusion.png")
        plot_confusion(np.array(report["confusion"]), ck.class_names, out / "confusion.png",
                       f"{Path(checkpoint).name} on {Path(where).name}, {split} "
                       f"(video top-1 {report['video_top1']:.3f})")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
