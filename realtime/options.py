"""The command-line options of the pipeline, shared by ``run``, ``demo``, ``gui`` and ``bench``.

Defaults come from :class:`~realtime.config.PipelineConfig` and choices from the engine table
(:mod:`realtime.engines.table`), so an option is defined once and cannot drift between commands.
Each command adds the options it has; :func:`config_from_args` uses whichever are present.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from star_har.args import positive_float, positive_int
from star_har.realtime import MODELS, model_checkpoint
from star_har.realtime.config import IMPORTANCE_METHODS, PipelineConfig
from star_har.realtime.engines.table import DEVICES, engine_choices

default = PipelineConfig.default


class _ModelName(argparse.Action):
    """``--model NAME``: the shipped checkpoint of that name, into the ``checkpoint`` field."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        setattr(namespace, self.dest, str(model_checkpoint(value)))


# option name -> (PipelineConfig field, add_argument keywords)
OPTIONS: dict[str, tuple[str, dict]] = {
    "--source": ("source", dict(default=default("source"),
                                help="webcam index (0), video file, rtsp:// or http(s):// URL, or folder of images")),
    "--checkpoint": ("checkpoint", dict(default=str(default("checkpoint")), metavar="PT",
                                        help="your own star-har checkpoint (.pt) instead of a shipped --model")),
    "--model": ("checkpoint", dict(action=_ModelName, choices=list(MODELS), default=argparse.SUPPRESS,
                                   help=f"a shipped model by name: {', '.join(MODELS)}")),
    "--engine": ("engine", dict(default=default("engine"), choices=engine_choices(),
                                help="inference engine (auto: the fastest available here)")),
    "--device": ("device", dict(default=default("device"), choices=DEVICES, help="inference device")),
    "--fp16": ("fp16", dict(action="store_true", help="half precision (engines that support it, on CUDA)")),
    "--bf16": ("bf16", dict(action="store_true", help="bfloat16 autocast in the torch engine: about 40 %% faster "
                                                     "RGB models on a CPU with AVX-512 BF16 (logits move by "
                                                     "~0.005)")),
    "--hop-seconds": ("hop_seconds", dict(type=positive_float, default=default("hop_seconds"), metavar="S",
                                          help="seconds between two predictions (converted to frames at the "
                                               "stream's frame rate)")),
    "--threshold": ("threshold", dict(type=float, default=default("threshold"),
                                      help="smoothed probability below which the answer is 'no confident action' "
                                           "(default: the checkpoint's calibrated threshold, else 0.5)")),
    "--smoothing": ("smoothing", dict(type=float, default=default("smoothing"),
                                      help="weight of the previous windows in the moving average of "
                                           "probabilities (0 = off)")),
    "--top-k": ("top_k", dict(type=positive_int, default=default("top_k"), help="classes listed per prediction")),
    "--pose-model": ("pose_model", dict(metavar="PATH", help="MediaPipe pose_landmarker_full.task (default: "
                                                             "$STAR_HAR_POSE_MODEL, the cache, or download)")),
    "--num-poses": ("num_poses", dict(type=positive_int, default=default("num_poses"),
                                      help="people MediaPipe looks for; above 1 every person is tracked and gets "
                                           "their own action")),
    "--importance": ("importance", dict(choices=IMPORTANCE_METHODS, default=default("importance"),
                                        help="how the frame-importance bars are computed: 'model' = what the "
                                             "checkpoint reports (its occlusion-fitted head, else attention); "
                                             "'gradient' = the first-order estimate of occlusion (one backward "
                                             "pass, about 2.5x a forward on a CPU; the first ONNX/TensorRT run "
                                             "exports it, minutes); 'occlusion' = measured, each frame removed in "
                                             "turn (T extra windows per prediction in one batched call); 'auto' = "
                                             "occlusion on a GPU, model on a CPU")),
    "--pose-every-frame": ("pose_every_frame", dict(action="store_true", help="run pose on every frame, not only "
                                                    "on the frames the model sees (slower)")),
    "--max-people": ("max_people", dict(type=positive_int, metavar="N",
                                        help="with --num-poses > 1: recognise at most N people per step, the "
                                             "largest, most central, longest tracked first (default: all)")),
    "--max-frames": ("max_frames", dict(type=positive_int, metavar="N", help="stop after N frames")),
    "--realtime-pace": ("realtime_pace", dict(action="store_true", help="replay files at their frame rate "
                                              "instead of as fast as possible")),
    "--fps": ("image_fps", dict(type=positive_float, help="frame rate of an image folder (default 30)")),
}
FIELDS = {f.name for f in fields(PipelineConfig)}


def add_pipeline_options(parser: argparse.ArgumentParser, *names: str, **overrides: dict) -> None:
    """Add the options ``names`` (e.g. ``"--engine"``); ``overrides`` maps a field to changed keywords.
    ``--checkpoint`` comes with ``--model`` (the two ways to choose a model)."""
    for name in [n for given in names for n in ((given, "--model") if given == "--checkpoint" else (given,))]:
        field, kwargs = OPTIONS[name]
        parser.add_argument(name, dest=field, **{**kwargs, **overrides.get(field, {})})


def config_from_args(args: argparse.Namespace, **changes) -> PipelineConfig:
    """A :class:`PipelineConfig` from the options present in ``args`` (others keep their defaults)."""
    given = {key: value for key, value in vars(args).items() if key in FIELDS}
    return PipelineConfig(**{**given, **changes})
