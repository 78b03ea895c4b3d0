"""``star-har importance``: the command-line glue (light: the work is imported when the command runs)."""

from __future__ import annotations

import argparse

from star_har.args import positive_int


def run(args: argparse.Namespace) -> int:
    from star_har.train.importance import run_importance
    return run_importance(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "importance", help="fit a checkpoint's frame-importance bars to occlusion and measure them",
        description="Give a STAR checkpoint importance bars that mean something: compute occlusion "
                    "ground truth (remove each frame in turn, measure the shown class's drop) on windows "
                    "of its own training split, fit a small importance head to it with the classifier "
                    "frozen, report faithfulness (median Spearman with occlusion, deletion test) and cost "
                    "on its held-out split for the head and for the attention bars, and write the "
                    "checkpoint with the head. Predictions are unchanged.")
    parser.add_argument("--checkpoint", required=True, help="a STAR checkpoint trained by star-har train")
    parser.add_argument("--output", required=True, help="where to write the checkpoint with the head")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--data", help="dataset folder, if not where the checkpoint was trained")
    parser.add_argument("--fit-sequences", type=positive_int, default=400, help="about this many training sequences, every k-th one (k = total // N)")
    parser.add_argument("--windows", type=positive_int, default=3, help="windows per fitting sequence")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)
