"""``star-har gui``: its own options (no PyQt6 import until the command runs)."""

from __future__ import annotations

import argparse

from star_har.args import positive_int
from star_har.realtime.options import add_pipeline_options


def _run_gui(args: argparse.Namespace) -> int:
    from star_har.realtime.gui.app import run_gui

    return run_gui(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    gui = subparsers.add_parser(
        "gui", help="the desktop app: live video, skeleton, predictions, importance bars",
        description="Open the star-har window: live video with the skeleton, the predicted action with "
                    "the next best ones, per-frame importance bars for the current window, a timeline, "
                    "and controls for source, checkpoint, engine, hop, threshold and recording. "
                    "Keys: Ctrl+Enter start, Space pause, Esc stop, Ctrl+O open file, Ctrl+R record, "
                    "Ctrl+Q quit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_pipeline_options(gui, "--source", "--checkpoint", "--engine", "--device", "--fp16", "--bf16", "--hop-seconds",
                         "--threshold", "--smoothing", "--top-k", "--pose-model", "--num-poses", "--max-people", "--importance",
                         source={"default": None,
                                 "help": "start at once with this webcam index, video file, URL or folder"})
    gui.add_argument("--screenshot", metavar="OUT.png",
                     help="save a PNG of the window after --screenshot-after predictions, then quit "
                          "(works without a display)")
    gui.add_argument("--screenshot-after", type=positive_int, default=6, metavar="N",
                     help="predictions to wait for before the screenshot")
    gui.set_defaults(handler=_run_gui)
