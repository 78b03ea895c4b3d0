"""``star-har train``, ``star-har eval`` and ``star-har calibrate``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from star_har.args import fraction, positive_float, positive_int
from star_har.errors import InvalidInputError
from star_har.train.datasets import KINDS


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", help="dataset folder (overrides data.root)")
    parser.add_argument("--kind", choices=KINDS,
                        help="dataset format (overrides data.kind)")
    parser.add_argument("--protocol", choices=("xsub", "xview", "xset"), help="NTU RGB+D split protocol")
    parser.add_argument("--pose-model", metavar="TASK", help="MediaPipe pose_landmarker .task bundle, for --kind clips")


def _data_default(key: str):
    from star_har.train.config import DataConfig

    return DataConfig.model_fields[key].default


def run_train(args: argparse.Namespace) -> int:
    import torch

    from star_har.train.config import load_config
    from star_har.train.engine import train

    overrides = list(args.set or [])
    for key, value in (("epochs", args.epochs), ("optim.lr", args.lr), ("batch_size", args.batch_size),
                       ("output", args.output), ("data.root", args.data), ("data.kind", args.kind),
                       ("data.protocol", args.protocol), ("data.pose_model", args.pose_model),
                       ("init", args.init), ("seed", args.seed)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.freeze_backbone:
        overrides.append("freeze_backbone=true")
    if args.classes:
        overrides.append(f"data.classes=[{', '.join(args.classes.split(','))}]")
    cfg = load_config(args.config, overrides)
    if args.export is not None and Path(args.export).is_dir():
        raise InvalidInputError(f"--export {args.export} is a folder; name the checkpoint file to write")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "star-har train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["train"] else None
    summary = train(cfg, resume=args.resume, command=command, progress=not args.no_progress, export=args.export)
    if summary:
        best = summary.get("best", {})
        which = f"soup of {len(summary['branches'])} fine-tunes" if "branches" in summary else f"best epoch {best.get('epoch')}"
        print(f"{which}: validation top-1 single-window {best.get('val_window_top1', float('nan')):.4f}, "
              f"multi-window {best.get('val_top1', float('nan')):.4f}; {summary['train_time_s']:.0f} s; "
              f"checkpoint {summary.get('checkpoint', summary['output'] + '/best.pt')}" + (f", exported to {summary['export']}" if "export" in summary else ""))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from star_har.train.evaluate import evaluate_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.data is None) == (args.config is None):
        raise InvalidInputError("give the dataset as --data DIR or as the --config it was trained with, not both")
    data = None
    if args.config:
        from star_har.train.config import load_config

        data = load_config(args.config)["data"]
    report = evaluate_checkpoint(args.checkpoint, data_root=args.data, kind=args.kind or "penn_action",
                                 protocol=args.protocol, pose_model=args.pose_model, split=args.split,
                                 windows=args.windows, batch_size=args.batch_size, output=args.output,
                                 val_fraction=args.val_fraction, split_seed=args.split_seed, data=data,
                                 out_of_vocabulary=args.out_of_vocabulary,
                                 skip_classes=tuple(args.skip_classes.split(",")) if args.skip_classes else ())
    print(f"{report['sequences']} sequences, {report['windows']} windows: top-1 of the centred window "
          f"{report['centred_window_top1']:.4f}, mean over all windows {report['all_windows_top1']:.4f}, "
          f"per video (windows averaged) {report['video_top1']:.4f}; video top-5 {report['video_top5']:.4f}")
    for name, acc in report["per_class"].items():
        print(f"  {name:<24} {'-' if acc is None else f'{acc:.3f}'}")
    for source, part in report.get("per_source", {}).items():
        print(f"  source {source}: {part['sequences']} videos, per video {part['video_top1']:.4f}, "
              f"centred window {part['centred_window_top1']:.4f}")
    opened = report["open_set"]
    print(f"open set ({'calibrated' if opened['calibrated'] else 'uncalibrated: threshold 0.5'}): "
          f"{opened['in_vocabulary_shown_and_right']:.1%} of {opened['in_vocabulary_windows']} in-vocabulary windows "
          f"shown and right; {opened['out_of_vocabulary_confident']:.1%} of {opened['out_of_vocabulary_windows']} "
          f"out-of-vocabulary windows shown as confident"
          + (f"; {opened['background_confident']:.1%} of {opened['background_windows']} background windows"
             if opened["background_windows"] else ""))
    print(f"report: {report['json']}" + (f", confusion matrix: {report['confusion_png']}" if "confusion_png" in report else ""))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    import torch

    from star_har.train.config import load_config
    from star_har.train.openset import calibrate_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, list(args.set or []))
    result = calibrate_checkpoint(args.checkpoint, cfg["data"], keep=args.keep, novelty_keep=args.novelty_keep,
                                  batch_size=args.batch_size, progress=not args.no_progress,
                                  flip_test=args.flip_test, like=args.like)
    limit = (f"novelty limit {result['max_novelty']:.1f} (head fitted to {result['novelty_fit_windows']} training "
             "windows)" if result["max_novelty"] is not None else f"threshold {result['threshold']:.3f}")
    print(f"temperature {result['temperature']:.3f}, {limit}: "
          f"{result['in_vocabulary_shown_and_right']:.1%} of {result['windows']} "
          f"{'training' if args.like else 'validation'} windows ({result['sequences']} videos) shown and right"
          + (f", {result['training_kept']:.1%} of the right training windows kept" if result["training_kept"] is not None
             else "") + f"; stored in {args.checkpoint}")
    return 0


def run_soup(args: argparse.Namespace) -> int:
    import torch

    from star_har.train.config import load_config
    from star_har.train.engine import cook_soup

    if len(args.checkpoints) < 2:
        raise InvalidInputError("a soup needs at least two checkpoints")
    if Path(args.output).is_dir():
        raise InvalidInputError(f"--output {args.output} is a folder; name the checkpoint file to write")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config) if args.config else None
    command = "star-har soup " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["soup"] else None
    record, _ = cook_soup([Path(p) for p in args.checkpoints], cfg, [Path(args.output)], command, {}, None,
                          torch.device("cuda" if torch.cuda.is_available() else "cpu"), not args.no_progress)
    print(f"soup of {len(args.checkpoints)}: validation top-1 single-window {record.get('val_window_top1', float('nan')):.4f}, "
          f"centred window {record.get('val_centred_window_top1', float('nan')):.4f}, "
          f"multi-window {record.get('val_top1', float('nan')):.4f}; checkpoint {args.output}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train or fine-tune a model from a YAML config",
        description="Train a model on Penn Action, NTU RGB+D, your own clips or .npz skeletons. Settings come "
                    "from --config (see configs/), then the options below, then --set key=value overrides. "
                    "Writes best.pt (a star-har checkpoint), last.pt (resumable state), log.csv, tensorboard/, "
                    "curves.png and confusion.png into the output folder. A config with a soup: section then fine-tunes "
                    "best.pt once per branch (soup/branch<i>/) and writes their weight average to soup.pt, the "
                    "model the command produces (and --export copies). Under torchrun it trains with "
                    "DistributedDataParallel (batch_size is the global batch).")
    p.add_argument("--config", metavar="YAML", help="config file, e.g. configs/star_pose_penn.yaml")
    _add_common(p)
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--lr", type=positive_float, help="learning rate (optim.lr)")
    p.add_argument("--batch-size", type=positive_int, help="global batch size")
    p.add_argument("--output", metavar="DIR", help="run folder (default from the config)")
    p.add_argument("--export", metavar="PT",
                   help="also write the final best checkpoint here (training writes nothing else outside --output)")
    p.add_argument("--seed", type=int)
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune from this checkpoint; the head is replaced when the class list differs")
    p.add_argument("--freeze-backbone", action="store_true", help="with --init: train only the classification head")
    p.add_argument("--classes", metavar="A,B,...", help="train on these classes only, in this order")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUTPUT/last.pt")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config value, e.g. --set optim.name=adamw --set data.window_seconds=1.2")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for log files)")
    p.set_defaults(handler=run_train)

    e = subparsers.add_parser(
        "eval", help="evaluate a checkpoint on a dataset",
        description="Top-1/top-5 accuracy (single window and averaged over several windows per video), "
                    "per-class accuracy, a confusion matrix PNG and a JSON report.")
    e.add_argument("--checkpoint", required=True, metavar="PT")
    e.add_argument("--data", metavar="DIR", help="dataset folder (or --config)")
    e.add_argument("--config", metavar="YAML", help="the dataset (and split rule) of a training config, e.g. "
                   "configs/everyday.yaml: per-source results when it has several sources")
    e.add_argument("--kind", choices=KINDS, help="dataset format (default penn_action)")
    e.add_argument("--protocol", choices=("xsub", "xview", "xset"), help="NTU RGB+D split protocol")
    e.add_argument("--pose-model", metavar="TASK", help="MediaPipe .task bundle, for --kind clips")
    e.add_argument("--split", choices=("all", "train", "val"), default="all",
                   help="which sequences: all, or the train/val part of the same held-out split training used")
    e.add_argument("--val-fraction", type=float, default=_data_default("val_fraction"),
                   help="held-out fraction for --split train/val")
    e.add_argument("--split-seed", type=int, default=_data_default("split_seed"),
                   help="seed of the held-out split for --split train/val")
    e.add_argument("--windows", type=positive_int, default=_data_default("eval_windows"),
                   help="windows spread evenly over each video (an odd count includes the centred one)")
    e.add_argument("--batch-size", type=positive_int, default=64)
    e.add_argument("--output", metavar="DIR", default="runs/eval", help="where the JSON report and PNG go")
    e.add_argument("--out-of-vocabulary", action="store_true",
                   help="classes the checkpoint does not know measure its open-set behaviour instead of failing")
    e.add_argument("--skip-classes", metavar="A,B,...", help="leave these classes out")
    e.add_argument("--threads", type=positive_int, help="torch CPU threads")
    e.set_defaults(handler=run_eval)

    c = subparsers.add_parser(
        "calibrate", help="calibrate a checkpoint's open-set threshold on its validation split",
        description="Fit the checkpoint's novelty head (STAR models: class means and covariance of the "
                    "training windows' features), then a temperature and the novelty limit on the validation "
                    "windows of the config's split (held-out subjects for everyday), and store them in the "
                    "checkpoint, where star-har run reads them: windows unlike every trained class show 'no "
                    "confident action'. Models without a novelty head get a confidence threshold instead. "
                    "Out-of-vocabulary data is never used here: measure it with star-har eval.")
    c.add_argument("--config", required=True, metavar="YAML", help="the config the checkpoint was trained with")
    c.add_argument("--checkpoint", required=True, metavar="PT", help="checkpoint to calibrate (rewritten in place)")
    c.add_argument("--novelty-keep", type=fraction, default=0.9,
                   help="share of the correctly classified validation windows within the novelty limit "
                        "(default 0.9)")
    c.add_argument("--keep", type=fraction, default=0.95,
                   help="models without a novelty head: share of the correctly classified validation "
                        "windows above the confidence threshold (default 0.95)")
    c.add_argument("--like", metavar="PT",
                   help="for a model trained on every subject (no validation split left): a checkpoint of the "
                        "same recipe calibrated on held-out subjects; the novelty limit keeps the share of the "
                        "right training windows that its limit kept, at its temperature")
    c.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                   help="switch the test-time flip on (the window and its mirror image averaged, twice the "
                        "cost) or off in the checkpoint before calibrating (default: as it is)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="config overrides, as for train")
    c.add_argument("--batch-size", type=positive_int, default=64)
    c.add_argument("--threads", type=positive_int, help="torch CPU threads")
    c.set_defaults(handler=run_calibrate)

    u = subparsers.add_parser(
        "soup", help="average fine-tunes of one model into one checkpoint (a weight soup)",
        description="Average the weights of checkpoints fine-tuned from the same starting point (same model, "
                    "classes and joint layout) into one network of the same size and cost, validate it on "
                    "the held-out split of the first checkpoint's training config (or --config) and save it. "
                    "A config's soup: section does the same inside star-har train (README \"Weight soup\"). "
                    "Fit the importance head and calibrate the result again: they belong to one network.")
    u.add_argument("checkpoints", nargs="+", metavar="PT", help="two or more checkpoints to average")
    u.add_argument("--output", required=True, metavar="PT", help="the checkpoint to write")
    u.add_argument("--config", metavar="YAML", help="validation data and split (default: the first checkpoint's "
                   "recorded training config)")
    u.add_argument("--threads", type=positive_int, help="torch CPU threads")
    u.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    u.set_defaults(handler=run_soup)
