"""Open-set behaviour: calibration on in-vocabulary validation windows, the checkpoint carrying it
(with a merged vocabulary) and the real-time post-processor applying it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_fixtures import make_npz_dataset

from star_har.errors import InvalidInputError
from star_har.model import build_model, load_checkpoint, save_checkpoint
from star_har.model.checkpoint import TemporalSampling
from star_har.model.openset import BACKGROUND, OpenSet
from star_har.realtime.postprocess import ACTION, UNCERTAIN, PostProcessor
from star_har.realtime.ring_buffer import Window
from star_har.train.config import load_config
from star_har.train.datasets.npz import load_npz_folder
from star_har.train.engine import train, window_outputs
from star_har.train.openset import (
    calibrate,
    calibrate_checkpoint,
    calibrate_like,
    fit_temperature,
    kept_share,
    open_set_report,
)
from star_har.train.windows import WindowDataset

NAMES = ["clap", "wave", "squat", BACKGROUND]


def _window() -> Window:
    return Window(None, np.zeros((16, 13, 3), np.float32), np.ones(16, bool), np.arange(16), np.arange(16) * 0.1, 0, 0)


def _generated_logits(rng: np.random.Generator, count: int, classes: int, peaked: bool) -> tuple[np.ndarray, np.ndarray]:
    """In-vocabulary windows: a clear peak at the label (sometimes wrong); out-of-vocabulary:
    no class stands out."""
    labels = rng.integers(0, classes, count)
    logits = rng.normal(0, 1.0, (count, classes))
    if peaked:
        winner = np.where(rng.uniform(size=count) < 0.9, labels, rng.integers(0, classes, count))
        logits[np.arange(count), winner] += rng.uniform(3.0, 8.0, count)
    return logits, labels


def test_calibration_keeps_right_windows_and_rejects_flat_ones():
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(6)]
    known, labels = _generated_logits(rng, 2000, 6, peaked=True)
    unknown, _ = _generated_logits(rng, 2000, 6, peaked=False)
    open_set = calibrate(known, labels, names, keep=0.95)
    report = open_set_report(known, labels, unknown, names, open_set)
    accuracy = float((known.argmax(1) == labels).mean())
    assert report["in_vocabulary_shown_and_right"] == pytest.approx(0.95 * accuracy, abs=0.01)
    assert report["out_of_vocabulary_confident"] < 0.1
    # without calibration (plain softmax, threshold 0.5) flat logits still often look confident
    assert open_set_report(known, labels, unknown, names, OpenSet())["out_of_vocabulary_confident"] > 0.2


def test_calibrating_like_a_reference_keeps_its_share_of_training_windows():
    """A model trained on every subject has no held-out windows: its limit keeps the share of its
    own right training windows that a validated calibration's limit kept of its own."""
    rng = np.random.default_rng(2)
    names = [f"c{i}" for i in range(5)]
    logits, labels = _generated_logits(rng, 1000, 5, peaked=True)
    novelty = rng.gamma(4.0, 50.0, 1000)
    for score in (novelty, None):
        reference = calibrate(logits, labels, names, keep=0.9, novelty=score, novelty_keep=0.9)
        share = kept_share(logits, labels, names, reference, score)
        # the training windows of a network trained on everyone: more familiar, less spread
        seen = calibrate_like(logits * 1.5, labels, names, {"temperature": reference.temperature,
                                                            "training_kept": 0.97}, None if score is None else score / 2)
        assert seen.temperature == reference.temperature and share == pytest.approx(0.9, abs=0.002)
        assert kept_share(logits * 1.5, labels, names, seen, None if score is None else score / 2) == pytest.approx(0.97, abs=0.002)
        assert (seen.max_novelty is None) == (score is None)


def test_temperature_fits_overconfident_logits():
    rng = np.random.default_rng(1)
    logits, labels = _generated_logits(rng, 2000, 5, peaked=True)
    assert fit_temperature(logits * 4, labels) == pytest.approx(4 * fit_temperature(logits, labels), rel=0.15)


def test_postprocessor_applies_the_checkpoint_calibration():
    open_set = OpenSet(temperature=2.0, threshold=0.6)
    post = PostProcessor(NAMES, smoothing=0.0, open_set=open_set)
    assert post.threshold == 0.6
    logits = np.log(np.array([0.8, 0.1, 0.05, 0.05]))  # 0.8 plain, about 0.6 at T = 2
    p = post.update(_window(), logits, np.zeros(16))
    assert p.score == pytest.approx(open_set.probabilities(logits)[0]) and p.score < 0.8
    assert p.state == (ACTION if p.score >= 0.6 else UNCERTAIN)
    background = post.update(_window(), np.array([0.0, 0.0, 0.0, 9.0]), np.zeros(16))
    assert background.state == UNCERTAIN and background.label is None and background.text() == "no confident action"
    assert PostProcessor(NAMES, threshold=0.3, open_set=open_set).threshold == 0.3  # explicit wins
    assert PostProcessor(NAMES).threshold == 0.5


def test_merged_vocabulary_and_calibration_round_trip_through_the_checkpoint(tmp_path):
    names = ["clap", "draw_circle", "wave", BACKGROUND]
    net = build_model("star", len(names), modality="pose", num_joints=20, dim=32, depth=1, num_heads=2)
    meta = {"open_set": OpenSet(1.7, 0.42).to_meta(), "merge": {"wave": ["wave_hand", "high_arm_wave"]}}
    save_checkpoint(tmp_path / "ck.pt", net, model_name="star", class_names=names, joint_layout="utd20",
                    sampling=TemporalSampling(16, 4.0), meta=meta)
    ck = load_checkpoint(tmp_path / "ck.pt")
    assert ck.class_names == names and ck.joint_layout == "utd20" and ck.meta["merge"] == meta["merge"]
    assert OpenSet.from_meta(ck.meta) == OpenSet(1.7, 0.42)
    assert OpenSet.from_meta({}) is None


def test_calibrate_checkpoint_on_generated_out_of_vocabulary_motion(tmp_path):
    """A tiny model trained on two generated motions, calibrated on their held-out sequences,
    then shown the third motion it never saw."""
    torch.set_num_threads(1)
    data = make_npz_dataset(tmp_path / "data", per_class=12, motions=("arms_up", "squat"))
    unknown = make_npz_dataset(tmp_path / "unknown", per_class=6, seed=5, motions=("wave",))
    cfg = load_config(None, [f"data.root={data}", "data.kind=npz", f"output={tmp_path / 'run'}",
                             "data.val_fraction=0.25", "data.window_seconds=1.0", "data.eval_windows=3",
                             "batch_size=8", "epochs=6", "optim.name=adamw", "optim.lr=3e-3", "data.repeats=4"])
    cfg["model"] = {"name": "star", "modality": "pose", "layout": "penn13", "dim": 32, "depth": 1, "num_heads": 2}
    cfg["augment"] = {"joint_dropout": 0.0, "point_dropout": 0.0, "frame_dropout": 0.0, "lower_body_dropout": 0.0}
    train(cfg, progress=False)
    checkpoint = tmp_path / "run" / "best.pt"
    result = calibrate_checkpoint(checkpoint, cfg["data"], novelty_keep=0.9, progress=False)
    ck = load_checkpoint(checkpoint)
    open_set = OpenSet.from_meta(ck.meta)
    assert open_set == OpenSet(result["temperature"], 0.0, result["max_novelty"]) and open_set.max_novelty > 0
    assert ck.hparams["novelty_head"] and result["novelty_fit_windows"] > 0
    assert result["in_vocabulary_shown_and_right"] >= 0.8
    waves = WindowDataset(load_npz_folder(unknown), ["wave"], "penn13", ck.sampling, None, windows_per_sequence=3)
    out = window_outputs(ck.build(), waves, 16, torch.device("cpu"), progress=False)
    report = open_set_report(np.zeros((0, 2)), np.zeros(0, int), out["logits"], ck.class_names, open_set,
                             np.zeros(0), out["novelty"])
    assert report["out_of_vocabulary_windows"] == 18 and report["out_of_vocabulary_confident"] <= 0.1
    flipped = calibrate_checkpoint(checkpoint, cfg["data"], progress=False, flip_test=True)
    ck = load_checkpoint(checkpoint)
    assert ck.hparams["flip_test"] and ck.build().flip_test and ck.hparams["mirror_classes"] == [0, 1]
    assert OpenSet.from_meta(ck.meta).max_novelty == flipped["max_novelty"] != result["max_novelty"]

    # trained on every sequence, nothing held out: calibrated like the validated run
    everyone = {**cfg["data"], "val_fraction": 0.0}
    assert 0.0 < flipped["training_kept"] <= 1.0
    with pytest.raises(InvalidInputError, match="--like"):
        calibrate_checkpoint(checkpoint, everyone, progress=False)
    final = tmp_path / "final.pt"
    final.write_bytes(checkpoint.read_bytes())
    alike = calibrate_checkpoint(final, everyone, progress=False, like=checkpoint)
    assert alike["like"] == str(checkpoint) and alike["temperature"] == flipped["temperature"]
    assert alike["training_kept"] == pytest.approx(flipped["training_kept"], abs=1.0 / alike["windows"])
    assert alike["windows"] > flipped["novelty_fit_windows"]  # the held-out sequences are training ones now
    assert OpenSet.from_meta(load_checkpoint(final).meta).max_novelty == alike["max_novelty"]
    with pytest.raises(InvalidInputError, match="held-out"):
        calibrate_checkpoint(checkpoint, everyone, progress=False, like=final)


def test_models_are_chosen_by_name():
    from star_har.cli import build_parser
    from star_har.errors import UnknownNameError
    from star_har.realtime import MODELS, model_checkpoint

    assert set(MODELS) == {"everyday", "penn-sports"}
    parser = build_parser()
    chosen = parser.parse_args(["run", "--model", "penn-sports"]).checkpoint
    assert chosen == str(model_checkpoint("penn-sports")) and chosen.endswith("assets/star_pose_penn.pt")
    assert parser.parse_args(["run", "--checkpoint", "mine.pt"]).checkpoint == "mine.pt"
    with pytest.raises(UnknownNameError, match="shipped: everyday, penn-sports"):
        model_checkpoint("sports")


def test_background_windows_are_reported_apart_from_the_vocabulary():
    logits = np.array([[5.0, 0, 0, 0], [0, 0, 0, 5.0], [0, 0, 0, 5.0], [0, 5.0, 0, 0]])
    labels = np.array([0, 3, 3, 3])  # the last background window is taken for a wave
    report = open_set_report(logits, labels, np.zeros((0, 4)), NAMES, OpenSet(1.0, 0.5))
    assert report["in_vocabulary_shown_and_right"] == 1.0 and report["in_vocabulary_windows"] == 1
    assert report["background_confident"] == pytest.approx(1 / 3) and report["background_windows"] == 3
    assert np.isnan(report["out_of_vocabulary_confident"]) and report["out_of_vocabulary_windows"] == 0


def test_novelty_head_is_the_mahalanobis_distance_to_the_nearest_class():
    from star_har.model.openset import NoveltyHead

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 4))
    labels = np.repeat([0, 1, 3], 200)  # class 2 has no training windows
    centres = np.array([[-5, 0, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0], [0, 5, 5, 0]], float)
    features = centres[labels] + rng.normal(size=(600, 4)) @ mixing
    head = NoveltyHead(4, 4)
    head.fit(torch.from_numpy(features).float(), torch.from_numpy(labels), shrinkage=0.0)
    residuals = features - centres[labels]
    precision = np.linalg.inv(np.cov(residuals.T))
    means = np.stack([features[labels == k].mean(0) for k in (0, 1, 3)])
    queries = rng.normal(0, 4, (50, 4))
    diff = queries[:, None] - means[None]
    expected = np.einsum("nkd,de,nke->nk", diff, precision, diff).min(1)
    got = head(torch.from_numpy(queries).float()).numpy()
    assert got == pytest.approx(expected, rel=0.05, abs=0.05)
    # a class without windows is never the nearest: at the origin (where a zero mean would sit)
    # the distance is measured from the trained classes
    from_trained = float(np.einsum("kd,de,ke->k", means, precision, means).min())
    assert from_trained > 1 and head(torch.zeros(1, 4)).item() == pytest.approx(from_trained, rel=0.05)


def test_postprocessor_hides_windows_beyond_the_novelty_limit():
    open_set = OpenSet(temperature=1.0, threshold=0.0, max_novelty=10.0)
    post = PostProcessor(NAMES, smoothing=0.0, open_set=open_set)
    logits = np.array([6.0, 0.0, 0.0, 0.0])
    assert post.update(_window(), logits, np.zeros(16), 3.0).state == ACTION
    novel = post.update(_window(), logits, np.zeros(16), 50.0)
    assert novel.state == UNCERTAIN and novel.novelty == 50.0 and novel.to_record()["novelty"] == 50.0
    assert post.update(_window(), logits, np.zeros(16)).state == ACTION  # not measured: not held against it
    assert OpenSet.from_meta({"open_set": open_set.to_meta()}) == open_set
    assert OpenSet.from_meta({"open_set": {"temperature": 1.0, "threshold": 0.5}}).max_novelty is None  # older files
