"""Parameters, FLOPs and CPU latency of one window for each registered model configuration.

    python benchmarks/model_cost.py --sizes 112 224 --frames 16 --threads 2 --runs 10

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, attention
and convolutions, one multiply-add = 2 FLOPs; element-wise work is not counted). Latency is the median
wall time of ``--runs`` eager forward passes at batch 1 in ``torch.inference_mode`` after
``--warmup`` passes, random weights and inputs (the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from model import build_model

# (label, model name, constructor arguments): the defaults each model ships with.
CONFIGS = (
    ("star pose", "star", dict(modality="pose")),
    ("star rgb+pose", "star", dict(modality="rgb+pose")),
    ("deformable rgb+pose", "deformable", dict(modality="rgb+pose")),
)


def window_inputs(modality: str, frames: int, size: int, joints: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    keypoints = torch.rand(1, frames, joints, 3)
    keypoints[..., :2] *= size
    video = torch.randn(1, 3, frames, size, size) if modality != "pose" else None
    return video, keypoints


def measure(net: torch.nn.Module, inputs: tuple, runs: int, warmup: int) -> tuple[float, float]:
    """(GFLOPs, median latency in ms) of ``net(*inputs)``."""
    counter = FlopCounterMode(display=False)
    # Autograd on: FlopCounterMode's module tracker needs grad_fns. The math SDPA backend, since
    # the counter does not count the fused CPU attention kernel (its matmuls it does count).
    with counter, sdpa_kernel(SDPBackend.MATH):
        net(*inputs)
    with torch.inference_mode():
        for _ in range(warmup):
            net(*inputs)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            net(*inputs)
            times.append(time.perf_counter() - start)
    return counter.get_total_flops() / 1e9, statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224], help="frame side in pixels")
    parser.add_argument("--frames", type=int, default=16, help="frames per window")
    parser.add_argument("--joints", type=int, default=13, help="joints per person")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=10, help="timed passes (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first")
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, {args.frames} frames, "
          f"{args.joints} joints, median of {args.runs} runs")
    print(f"| model | input | params (M) | GFLOPs / window | CPU ms / window |\n|---|---|---|---|---|")
    for label, name, cfg in CONFIGS:
        if args.only and label not in args.only:
            continue
        net = build_model(name, 15, num_joints=args.joints, **cfg).eval()
        params = sum(p.numel() for p in net.parameters()) / 1e6
        pose_only = cfg["modality"] == "pose"
        for size in args.sizes[:1] if pose_only else args.sizes:  # pose input has no frame size
            inputs = window_inputs(cfg["modality"], args.frames, size, args.joints)
            gflops, ms = measure(net, inputs, args.runs, args.warmup)
            shape = f"{args.frames} x {args.joints} joints" if pose_only else f"{args.frames} x {size} x {size}"
            print(f"| {label} | {shape} | {params:.2f} | {gflops:.1f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
