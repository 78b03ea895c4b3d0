"""Write the network a training config would train, before any training, as a star-har checkpoint.

    python benchmarks/untrained_checkpoint.py --config configs/star_rgb_biisc_cpu.yaml --output rgb64.pt

For timing a configuration end to end (``star-har run``, ``star-har bench``) before a trained
checkpoint of it exists: the cost does not depend on the weights, its predictions mean nothing. The
network is built exactly as ``star-har train`` builds it (``init`` included), with the config's
classes when it names them (``data.classes``), else numbered ones, and its sampling and crop size.
"""

from __future__ import annotations

import argparse

from star_har.model import save_checkpoint
from star_har.train.config import load_config
from star_har.train.engine import build_network, crop_meta, model_name_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training config (configs/*.yaml)")
    parser.add_argument("--output", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--classes", type=int, default=8, help="number of classes when the config names none")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    cfg = load_config(args.config, args.set)
    classes = cfg["data"].get("classes") or [f"class_{i}" for i in range(args.classes)]
    net, layout, sampling = build_network(cfg, list(classes))
    meta = {"untrained": True, **crop_meta(cfg, net.hparams.get("modality", "pose"))}
    save_checkpoint(args.output, net, model_name=model_name_of(cfg), class_names=list(classes), joint_layout=layout,
                    sampling=sampling, meta=meta)
    print(f"wrote {args.output}: {net.hparams.get('modality')}, {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M "
          f"parameters, {sampling.frames_per_window} frames over {sampling.window_seconds:g} s")


if __name__ == "__main__":
    main()
