"""Which open-set score tells unknown actions from known ones: the comparison behind the choice.

    python benchmarks/open_set.py --checkpoint assets/star_pose_penn.pt \\
        --unknown configs/everyday.yaml --skip-classes background,squat,tennis_serve,tennis_swing
    python benchmarks/open_set.py --checkpoint runs/everyday_soup.pt \\
        --unknown configs/star_pose_penn.yaml --skip-classes tennis_forehand,baseball_pitch

Known windows: the validation split of the checkpoint's own training config (held-out subjects or
videos); the training split's windows fit what a score needs (class means, covariance, neighbours).
Unknown windows: the validation split of the ``--unknown`` config, minus its classes that the
checkpoint knows and ``--skip-classes`` (actions that mean the same under another name, and the
trained background). For every score, the limit keeps ``--keep`` of the known windows the model
gets right, and the table shows the share of unknown windows that would still be shown as an action:

* ``probability``: the softmax probability of the best class (temperature fitted on validation);
* ``energy``: log-sum-exp of the logits (Liu et al., NeurIPS 2020);
* ``knn``: cosine similarity to the 10th nearest training window's features;
* ``mahalanobis``: :class:`~star_har.model.openset.NoveltyHead`, what ``star-har calibrate`` ships.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.special
import torch

from star_har.model import load_checkpoint
from star_har.model.openset import BACKGROUND, NoveltyHead, OpenSet
from star_har.train.config import load_config
from star_har.train.datasets import load_splits
from star_har.train.engine import window_outputs
from star_har.train.openset import fit_temperature, keep_limit
from star_har.train.windows import WindowDataset


def scores(train: dict, known: dict, unknown: dict, temperature: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(known, unknown) scores per method, higher = more like the training data."""
    head = NoveltyHead(train["features"].shape[1], int(train["labels"].max()) + 1)
    head.fit(torch.from_numpy(train["features"]), torch.from_numpy(train["labels"]))
    bank = train["features"] / np.linalg.norm(train["features"], axis=1, keepdims=True)

    def knn(features: np.ndarray) -> np.ndarray:
        similarity = features / np.linalg.norm(features, axis=1, keepdims=True) @ bank.T
        return np.sort(similarity, axis=1)[:, -10]

    methods = {
        "probability": lambda out: OpenSet(temperature).probabilities(out["logits"]).max(axis=1),
        "energy": lambda out: scipy.special.logsumexp(out["logits"], axis=1),
        "knn": lambda out: knn(out["features"]),
        "mahalanobis": lambda out: -head(torch.from_numpy(out["features"])).numpy(),
    }
    return {name: (method(known), method(unknown)) for name, method in methods.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--unknown", required=True, metavar="YAML", help="config whose validation split holds the unknown actions")
    parser.add_argument("--skip-classes", default="", metavar="A,B,...", help="unknown-config classes left out")
    parser.add_argument("--keep", type=float, nargs="+", default=[0.95, 0.9], help="shares of right known windows kept")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    data = dict(ck.meta["config"]["data"])
    windows = int(data["eval_windows"])
    train_seqs, val_seqs, _ = load_splits(data)
    skipped = set(filter(None, args.skip_classes.split(",")))
    unknown_seqs = [s for s in load_splits(load_config(args.unknown)["data"])[1]
                    if s.label not in ck.class_names and s.label not in skipped]
    net, cpu = ck.build(), torch.device("cpu")

    def run(sequences: list, names: list[str]) -> dict:
        return window_outputs(net, WindowDataset.for_checkpoint(ck, sequences, windows, names), 64, cpu,
                              progress=False, features=True)

    train, known = run(train_seqs, ck.class_names), run(val_seqs, ck.class_names)
    unknown = run(unknown_seqs, sorted({s.label for s in unknown_seqs}))
    names = np.asarray(ck.class_names, dtype=object)
    predicted, unknown_predicted = known["logits"].argmax(1), unknown["logits"].argmax(1)
    in_vocabulary = names[known["labels"]] != BACKGROUND
    right = (predicted == known["labels"]) & in_vocabulary
    print(f"{args.checkpoint}: {in_vocabulary.sum()} known windows ({right.mean():.1%} right), "
          f"{len(unknown_predicted)} unknown windows ({', '.join(sorted({s.label for s in unknown_seqs}))})")
    print(f"{'score':<12} {'kept':>5} {'known shown and right':>22} {'unknown shown':>14}")
    temperature = fit_temperature(known["logits"], known["labels"])
    for name, (known_score, unknown_score) in scores(train, known, unknown, temperature).items():
        for keep in args.keep:
            limit = keep_limit(np.sort(known_score[right])[::-1], keep)
            shown = (known_score >= limit) & (names[predicted] != BACKGROUND)
            unknown_shown = (unknown_score >= limit) & (names[unknown_predicted] != BACKGROUND)
            print(f"{name:<12} {keep:>5.2f} {np.mean(shown[in_vocabulary] & right[in_vocabulary]):>22.1%} "
                  f"{unknown_shown.mean():>14.1%}")


if __name__ == "__main__":
    main()
