"""Cheap importance candidates that did not make it, measured against occlusion.

    python benchmarks/importance_probes.py --checkpoint assets/star_pose_penn.pt

The issue asks for bars that are faithful (median Spearman with occlusion >= 0.6) *and* cost at
most 20 % of one forward. A full backward pass to the input is faithful (``GradientImportance``,
0.66) but costs 1.4 extra forwards; a backward pass that stops at the input of layer ``l`` (of the
2L) skips the layers below it and the embedding. This probe measures whether stopping early keeps the faithfulness: for the input of every
transformer layer ``l`` (1 = the embedded joint tokens) it scores frame ``t`` as

* ``feature occlusion``: the first-order drop when frame ``t``'s tokens at layer ``l`` are replaced
  by the mean of their neighbours' (occlusion done in feature space), ``-g_l . (fill(h_l) - h_l)``;
* ``gradient x token``: ``g_l . h_l`` summed over the frame's tokens,

with ``g_l`` the gradient of the shown class's log probability at ``h_l``, and reports each one's
median Spearman correlation with measured occlusion on the checkpoint's held-out windows.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader

from star_har.model import load_checkpoint
from star_har.model.importance import occlusion_fill, spearman
from star_har.train.datasets import load_splits
from star_har.train.importance import collect
from star_har.train.windows import WindowDataset


def layer_scores(net: torch.nn.Module, frames: torch.Tensor | None,
                 keypoints: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer input: (feature-occlusion scores, gradient x token scores), each ``(B, T)``. The
    layers' inputs are caught by forward pre-hooks, so the model runs its own ``classify``."""
    inputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for layer in net.layers]
    try:
        with torch.enable_grad():
            logits = net.classify(frames, keypoints.requires_grad_(True)).logits
            grads = torch.autograd.grad(logits.log_softmax(-1).max(-1).values.sum(), inputs)
    finally:
        for hook in hooks:
            hook.remove()
    out = []
    for hidden, grad in zip(inputs, grads):
        hidden = hidden.detach()
        out.append(((-(grad * (occlusion_fill(hidden, 1) - hidden)).sum((2, 3))).numpy(),
                    (grad * hidden).sum((2, 3)).numpy()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="assets/star_pose_penn.pt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    _, val_seqs, _ = load_splits(dict(checkpoint.meta["config"]["data"]))
    dataset = WindowDataset.for_checkpoint(checkpoint, val_seqs, 1)
    net = checkpoint.build().eval().requires_grad_(False)
    drops = collect(net, dataset)["drops"]
    per_layer: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for item in DataLoader(dataset, batch_size=32):
        per_layer.append(layer_scores(net, item.get("frames"), item["keypoints"]))
    print(f"{len(drops)} held-out windows; median Spearman with occlusion")
    for index in range(len(net.layers)):
        occl, grad_token = (np.concatenate([batch[index][kind] for batch in per_layer]) for kind in (0, 1))
        print(f"layer {index + 1} input: feature occlusion {np.median([spearman(a, b) for a, b in zip(occl, drops)]):.2f}, "
              f"gradient x token {np.median([spearman(a, b) for a, b in zip(grad_token, drops)]):.2f}")


if __name__ == "__main__":
    main()
