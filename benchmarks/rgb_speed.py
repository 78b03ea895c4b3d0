"""RGB+pose window cost on this CPU by crop size and engine: torch fp32, torch bf16 autocast, ONNX Runtime.

    python benchmarks/rgb_speed.py --models star deformable --sizes 64 80 96 112 --threads 1

Prints a markdown table of ms per window (batch 1, ``--frames`` frames, random weights: latency does
not depend on them) as "CPU / wall": the median process CPU time, which on a machine shared with other
jobs stays close to what the window costs on a quiet core (wall time grows with the load), and the
median wall time. For bf16 it adds the largest logit change against fp32 on the same input. ``--onnx-sizes`` limits ONNX Runtime (each size costs an ONNX export, 30-60 s) to a few sizes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from star_har.model import TemporalSampling, build_model
from star_har.model.checkpoint import Checkpoint
from star_har.realtime.engines import create_engine


def checkpoint(model: str, size: int, frames: int) -> Checkpoint:
    torch.manual_seed(0)
    net = build_model(model, 15, modality="rgb+pose")
    hparams = {k: v for k, v in net.hparams.items() if k != "num_classes"}
    return Checkpoint(model, 15, hparams, [f"c{i}" for i in range(15)], "penn13",
                      TemporalSampling(frames, frames / 10), net.state_dict(), {"input_size": [size, size]})


def median_ms(engine, frames: np.ndarray, keypoints: np.ndarray, repeats: int) -> str:
    """"CPU / wall" median milliseconds of ``engine.infer`` after one warm-up call."""
    engine.infer(frames, keypoints)
    cpu, wall = [], []
    for _ in range(repeats):
        start_cpu, start = time.process_time(), time.perf_counter()
        engine.infer(frames, keypoints)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return f"{1000 * statistics.median(cpu):.0f} / {1000 * statistics.median(wall):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["star", "deformable"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 80, 96, 112])
    parser.add_argument("--onnx-sizes", nargs="*", type=int, default=[64, 112])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), T = {args.frames}, batch 1, median of {args.repeats}")
    print("| model | crop | torch fp32 ms (CPU / wall) | torch bf16 autocast ms | bf16 max logit change "
          "| onnxruntime fp32 ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        for model in args.models:
            for size in args.sizes:
                ck = checkpoint(model, size, args.frames)
                frames = rng.standard_normal((1, 3, args.frames, size, size)).astype(np.float32)
                keypoints = np.concatenate([rng.uniform(0, size, (1, args.frames, 13, 2)),
                                            np.ones((1, args.frames, 13, 1))], axis=-1).astype(np.float32)
                engine = create_engine(ck, "torch", "cpu")
                fp32 = median_ms(engine, frames, keypoints, args.repeats)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    bf16 = median_ms(engine, frames, keypoints, args.repeats)
                    low = engine.infer(frames, keypoints)[0]
                change = float(np.abs(low - engine.infer(frames, keypoints)[0]).max())
                ort = "-"
                if size in args.onnx_sizes:
                    session = create_engine(ck, "onnxruntime", "cpu", cache_dir=Path(cache), threads=args.threads)
                    ort = median_ms(session, frames, keypoints, args.repeats)
                print(f"| {model} | {size} | {fp32} | {bf16} | {change:.3f} | {ort} |", flush=True)


if __name__ == "__main__":
    main()
