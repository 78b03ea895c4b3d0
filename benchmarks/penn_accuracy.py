"""Accuracy and robustness of a pose checkpoint on its own held-out Penn Action split.

    python benchmarks/penn_accuracy.py --checkpoint assets/star_pose_penn.pt [--json OUT]

Uses the split rule and data section recorded in the checkpoint (the 15 % of the training
annotations its training never saw), and reports, like the accuracy issue's table:

* one centred window per video, the mean over 5 windows spread over the video, and the video score
  (the 5 windows' softmax averaged), with and without test-time flip;
* the centred window under webcam-like corruptions (:func:`star_har.train.augment.perturb_keypoints`):
  legs missing in every frame, 5 % per-joint jitter, a MediaPipe-like mix; with the cost in points;
* batch-1 latency of one window (torch, this machine's threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch
from torch.utils.data import Dataset

from star_har.model import load_checkpoint
from star_har.train.augment import PERTURBATIONS, perturb_keypoints
from star_har.train.datasets import load_splits
from star_har.train.engine import predict_windows
from star_har.train.importance import forward_ms
from star_har.train.metrics import summarize
from star_har.train.windows import WindowDataset


class Perturbed(Dataset):
    """``dataset``'s windows with one corruption each, seeded per window (repeatable)."""

    def __init__(self, dataset: WindowDataset, kind: str, layout: str) -> None:
        self.dataset, self.kind, self.layout = dataset, kind, layout

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        rng = np.random.default_rng((17, index))
        item["keypoints"] = torch.from_numpy(perturb_keypoints(item["keypoints"].numpy(), self.layout, self.kind, rng))
        return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="assets/star_pose_penn.pt")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    _, held, _ = load_splits(dict(ck.meta["config"]["data"]))
    results: dict[str, float] = {}

    def evaluate(net, windows: int, kind: str | None = None) -> dict:
        dataset = WindowDataset.for_checkpoint(ck, held, windows)
        data = dataset if kind is None else Perturbed(dataset, kind, ck.joint_layout)
        scores, labels, sequences = predict_windows(net, data, 64, torch.device("cpu"), progress=False)
        return summarize(scores, labels, sequences, ck.class_names)

    for flip in (False, True):
        if flip and not ck.hparams.get("layout"):
            continue  # test-time flip needs the model to know its joint layout
        net = dataclasses.replace(ck, hparams={**ck.hparams, "flip_test": flip}).build() if "layout" in ck.hparams \
            else ck.build()
        tag = "flip" if flip else "plain"
        report = evaluate(net, 5)
        results.update({f"{tag}/centred_window_top1": report["centred_window_top1"],
                        f"{tag}/all_windows_top1": report["all_windows_top1"],
                        f"{tag}/video_top1": report["video_top1"]})
        clean = report["centred_window_top1"]
        for kind in PERTURBATIONS:
            corrupted = evaluate(net, 1, kind)["centred_window_top1"]
            results[f"{tag}/{kind}_centred_window_top1"] = corrupted
            results[f"{tag}/{kind}_cost_points"] = 100 * (clean - corrupted)
        one_window = WindowDataset.for_checkpoint(ck, held[:1], 1)
        results[f"{tag}/latency_ms_batch1"] = forward_ms(net, one_window)
    print(f"{args.checkpoint}: {len(held)} held-out videos")
    for key, value in results.items():
        print(f"  {key:<40} {value:.4f}" if "top1" in key else f"  {key:<40} {value:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": args.checkpoint, "videos": len(held), **results}, handle, indent=1)


if __name__ == "__main__":
    main()
