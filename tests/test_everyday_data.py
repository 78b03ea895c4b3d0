"""Everyday-action sources: UTD-MHAD and MSR Action3D loaders on fixtures written in their real
formats, the virtual camera, the merged multi-source dataset and cross-subject splits."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.io

from star_har.errors import InvalidInputError
from star_har.model import TemporalSampling, convert_keypoints
from star_har.model.openset import BACKGROUND
from star_har.train.augment import AugmentConfig
from star_har.train.camera import CameraRanges, VirtualCamera, recorded_view, render_window
from star_har.train.config import DEFAULTS, validate_config
from star_har.train.datasets import load_sequences, load_splits
from star_har.train.datasets.base import stratified_split
from star_har.train.datasets.kinect import MSR_2D_SIZE, load_msr_action3d, load_utd_mhad
from star_har.train.windows import WindowDataset
from tests.conftest import shared_path

# A standing Kinect skeleton in UTD's joint order (metres, Kinect skeleton space: mirrored x).
UTD_STANDING = np.array([
    [0.0, 0.50, 2.8], [0.0, 0.30, 2.85], [0.0, 0.0, 2.9], [0.0, -0.1, 2.85],
    [-0.2, 0.2, 2.85], [-0.24, -0.08, 2.84], [-0.24, -0.32, 2.8], [-0.23, -0.34, 2.78],
    [0.2, 0.2, 2.85], [0.24, -0.08, 2.84], [0.24, -0.32, 2.8], [0.23, -0.34, 2.78],
    [-0.1, -0.19, 2.82], [-0.11, -0.66, 2.92], [-0.07, -1.02, 2.94], [-0.1, -1.09, 2.9],
    [0.1, -0.19, 2.82], [0.11, -0.66, 2.92], [0.07, -1.02, 2.94], [0.1, -1.09, 2.9]], np.float32)
UTD_TO_MSR = [4, 8, 1, 2, 12, 16, 3, 5, 9, 6, 10, 7, 11, 13, 17, 14, 18, 15, 19, 0]  # msr20 joint j = utd20 joint


def _write_utd(path, frames: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    skeleton = UTD_STANDING[None] + rng.normal(0, 0.01, (frames, 20, 3)).astype(np.float32)
    scipy.io.savemat(path, {"d_skel": skeleton.transpose(1, 2, 0)})
    return skeleton


def _msr_text(frames: np.ndarray) -> str:
    return "".join(f"{x:.6f} {y:.6f} {z:.6f} 1.000000\n" for frame in frames for x, y, z in frame)


def test_utd_loader_reads_mat_files_in_camera_space(tmp_path):
    skeleton = _write_utd(tmp_path / "a3_s7_t2_skeleton.mat")
    (seq,) = load_utd_mhad(tmp_path)
    assert (seq.label, seq.subject, seq.layout, seq.fps, seq.num_frames) == ("wave", "s7", "utd20", 30.0, 12)
    # Kinect's mirrored x is negated: the person's right shoulder lands on the image's left.
    np.testing.assert_allclose(seq.points3d[..., 0], -skeleton[..., 0], atol=1e-6)
    np.testing.assert_allclose(seq.points3d[..., 1:3], skeleton[..., 1:3], atol=1e-6)
    assert (seq.points3d[..., 3] == 1).all()
    right, left = seq.keypoints[0, 8], seq.keypoints[0, 4]
    assert right[0] < 320 < left[0] and seq.keypoints[0, 0, 1] < seq.keypoints[0, 15, 1]  # head above feet
    np.testing.assert_allclose(seq.keypoints, recorded_view(seq.points3d))


def test_utd_loader_rejects_malformed_files(tmp_path):
    scipy.io.savemat(tmp_path / "a1_s1_t1_skeleton.mat", {"d_skel": np.zeros((25, 3, 4))})
    with pytest.raises(InvalidInputError, match=r"\(20, 3, T\)"):
        load_utd_mhad(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no UTD-MHAD"):
        load_utd_mhad(tmp_path / "empty")


def test_msr_loader_drops_zero_frames_and_skips_absurd_files(tmp_path, caplog):
    folder = tmp_path / "skeleton3d"
    folder.mkdir()
    msr = UTD_STANDING[UTD_TO_MSR]
    frames = np.repeat(msr[None], 6, axis=0)
    frames[2] = 0.0  # a dirty all-zero frame
    (folder / "a10_s09_e01_skeleton3D.txt").write_text(_msr_text(frames))
    absurd = frames.copy()
    absurd[1, 3, 0] = 4e9
    (folder / "a01_s03_e01_skeleton3D.txt").write_text(_msr_text(absurd))
    with caplog.at_level(logging.WARNING):
        (seq,) = load_msr_action3d(tmp_path)
    assert "skipped 1 of 2 files, dropped 1 all-zero frames" in caplog.text and "absurd" in caplog.text
    assert (seq.label, seq.subject, seq.layout, seq.fps, seq.num_frames) == ("hand_clap", "s09", "msr20", 15.0, 5)
    # The same body through both joint orders gives the same (un-mirrored) skeleton.
    expected = np.concatenate([UTD_STANDING * [-1, 1, 1], np.ones((20, 1))], axis=1)
    np.testing.assert_allclose(convert_keypoints(seq.points3d[0], "msr20", "utd20"), expected, atol=1e-5)


def test_msr_2d_pixels_are_unmirrored(tmp_path):
    folder = tmp_path / "skeleton2d"
    folder.mkdir()
    pixels = np.zeros((2, 20, 3))
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 100.0, np.arange(20) * 5, 2000
    (folder / "a02_s01_e03_skeleton.txt").write_text(_msr_text(pixels))
    (seq,) = load_msr_action3d(tmp_path, dims="2d")
    assert seq.points3d is None and (seq.width, seq.height) == MSR_2D_SIZE
    np.testing.assert_allclose(seq.keypoints[..., 0], MSR_2D_SIZE[0] - 100.0)
    np.testing.assert_allclose(seq.keypoints[0, :, 1], np.arange(20) * 5)


def test_pinhole_projection_of_a_known_point():
    camera = VirtualCamera(yaw=0.0, pitch=0.0, distance=2.0, focal=500.0, width=640.0, height=480.0)
    point = np.array([[0.4, 0.2, 0.5, 1.0]])
    u, v, c, _ = camera.project(point, pivot=np.zeros(3))[0]
    assert (u, v, c) == pytest.approx((320 + 500 * 0.4 / 2.5, 240 - 500 * 0.2 / 2.5, 1.0))
    # Turned 90 degrees around the person, the point's z offset becomes sideways and its x depth.
    u = VirtualCamera(yaw=90.0, distance=3.0).project(point, np.zeros(3))[0, 0]
    assert u == pytest.approx(320 + 500 * -0.5 / (3.0 + 0.4))
    u = VirtualCamera(yaw=-90.0, distance=3.0).project(point, np.zeros(3))[0, 0]
    assert u == pytest.approx(320 + 500 * 0.5 / (3.0 - 0.4))
    # From straight above (pitch 90), a point above the pivot is nearer, so further from the centre.
    above = VirtualCamera(pitch=90.0, distance=3.0)
    high, low = above.project(np.array([[0.3, 1.0, 0.0, 1.0], [0.3, -1.0, 0.0, 1.0]]), np.zeros(3))
    assert high[0] - 320 == pytest.approx(500 * 0.3 / 2.0) and low[0] - 320 == pytest.approx(500 * 0.3 / 4.0)
    # Behind the camera: invisible.
    assert camera.project(np.array([[0.0, 0.0, -5.0, 1.0]]), np.zeros(3))[0, 2] == 0.0


def test_projected_depth_is_in_pixels_at_the_persons_scale():
    """Depth = focal * (q_z - d) / d, d the median depth: a metre there is as many pixels of depth
    as of u; nearer points are smaller; a point behind the camera does not count for d."""
    camera = VirtualCamera(distance=2.5, focal=500.0)
    points = np.array([[0.0, 0.0, -0.5, 1.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.5, 1.0], [0.0, 0.0, -9.0, 1.0]])
    projected = camera.project(points, np.zeros(3))
    assert projected.shape == (4, 4)
    np.testing.assert_allclose(projected[:3, 3], [-100.0, 0.0, 100.0], atol=1e-3)
    assert projected[1, 0] - 320 == pytest.approx(200.0)  # the same metre sideways: 200 px of u
    turned = VirtualCamera(yaw=90.0, distance=2.5, focal=500.0).project(points[:3], np.zeros(3))
    np.testing.assert_allclose(turned[:, 3], [0.0, 200.0, 0.0], atol=1e-3)  # from the side, x is depth


def test_frontal_camera_reproduces_the_xy_layout():
    points = np.concatenate([UTD_STANDING * [-1, 1, 0] + [0, 0, 3.0], np.ones((20, 1))], axis=1)
    keypoints = render_window(points[None], VirtualCamera(distance=4.0, focal=600.0))[0]
    centre = points[:, :3].mean(axis=0)
    scale = 600.0 / 4.0  # every point at the pivot's depth
    np.testing.assert_allclose(keypoints[:, 0], 320 + scale * (points[:, 0] - centre[0]), atol=1e-3)
    np.testing.assert_allclose(keypoints[:, 1], 240 - scale * (points[:, 1] - centre[1]), atol=1e-3)


def _no_augment(**overrides) -> AugmentConfig:
    """Every random transform off, so a window shows only the camera it was rendered from."""
    return AugmentConfig(**{"flip": 0.0, "scale": (1.0, 1.0), "aspect": 0.0, "rotation_degrees": 0.0, "shear": 0.0,
                            "joint_offset": 0.0, "jitter": 0.0, "joint_dropout": 0.0, "point_dropout": 0.0,
                            "frame_dropout": 0.0, "lower_body_dropout": 0.0, "speed": (1.0, 1.0), **overrides})


def test_training_windows_of_3d_sequences_come_from_random_cameras(tmp_path):
    _write_utd(tmp_path / "a4_s1_t1_skeleton.mat", frames=40)
    sequences = load_utd_mhad(tmp_path)
    sampling = TemporalSampling(8, 1.0)
    plain = _no_augment()
    train = WindowDataset(sequences, ["clap"], "utd20", sampling, plain, repeats=4, seed=1)
    views = [train[i]["keypoints"].numpy() for i in range(4)]
    widths = [np.ptp(v[0, :, 0]) / np.ptp(v[0, :, 1]) for v in views]
    assert np.ptp(widths) > 0.05  # different yaw/pitch: the body's aspect changes between windows
    fixed = WindowDataset(sequences, ["clap"], "utd20", sampling, plain, repeats=1, seed=1,
                          cameras=CameraRanges((0, 0), (0, 0), (3, 3), (500, 500)))
    frontal = fixed[0]["keypoints"].numpy()
    recorded = sequences[0].keypoints[:8]
    ratio = np.ptp(frontal[0, :, 0]) / np.ptp(recorded[0, :, 0])
    assert ratio == pytest.approx(np.ptp(frontal[0, :, 1]) / np.ptp(recorded[0, :, 1]), rel=0.05)
    evaluation = WindowDataset(sequences, ["clap"], "utd20", sampling, None, windows_per_sequence=1)
    np.testing.assert_allclose(evaluation[0]["keypoints"].numpy(), sequences[0].keypoints[evaluation.windows[0][1], :, :3])
    with_depth = WindowDataset(sequences, ["clap"], "utd20", sampling, None, windows_per_sequence=1, depth=True)
    np.testing.assert_allclose(with_depth[0]["keypoints"].numpy(), sequences[0].keypoints[evaluation.windows[0][1]])
    assert train[0]["keypoints"].shape[-1] == 3  # a window rendered from a random camera loses depth too
    rendered = WindowDataset(sequences, ["clap"], "utd20", sampling, plain, repeats=1, seed=1, depth=True)[0]["keypoints"]
    assert rendered.shape[-1] == 4 and float(rendered[..., 3].std()) > 1.0


def test_a_share_of_3d_training_windows_keeps_the_recording_camera(tmp_path):
    _write_utd(tmp_path / "a4_s1_t1_skeleton.mat", frames=40)
    sequences = load_utd_mhad(tmp_path)
    recorded = sequences[0].keypoints[..., :3]

    def shares_from_recording(share: float) -> float:
        train = WindowDataset(sequences, ["clap"], "utd20", TemporalSampling(8, 1.0),
                              _no_augment(recorded_view=share), repeats=200, seed=2)
        windows = [train[i]["keypoints"].numpy() for i in range(len(train))]
        # A window from the recording camera is frames of the recorded view, as they are.
        return np.mean([all(np.isclose(recorded, frame, atol=1e-3).all(axis=(1, 2)).any() for frame in w)
                        for w in windows])

    assert shares_from_recording(0.0) == 0.0
    assert shares_from_recording(1.0) == 1.0
    assert 0.35 < shares_from_recording(0.5) < 0.65


def _everyday_data(tmp_path, **extra) -> dict:
    utd, msr = tmp_path / "utd", tmp_path / "msr" / "skeleton3d"
    utd.mkdir(parents=True)
    msr.mkdir(parents=True)
    for action in (3, 4, 22):  # wave, clap, jog
        for subject in (1, 7):
            _write_utd(utd / f"a{action}_s{subject}_t1_skeleton.mat", seed=action + subject)
    for action in (1, 10, 5):  # high_arm_wave, hand_clap, forward_punch
        for subject in ("01", "09"):
            frames = np.repeat(UTD_STANDING[UTD_TO_MSR][None], 8, axis=0)
            (msr / f"a{action:02d}_s{subject}_e01_skeleton3D.txt").write_text(_msr_text(frames))
    data = {"kind": "everyday", "frames_per_window": 8, "window_seconds": 1.0,
            "sources": {"utd_mhad": {"kind": "utd_mhad", "root": str(utd), "val_subjects": ["s7"]},
                        "msr_action3d": {"kind": "msr_action3d", "root": str(msr.parent), "val_subjects": ["s09"]}},
            "merge": {"wave": ["wave", "high_arm_wave"], "clap": ["clap", "hand_clap"], "jog": ["jog", "jogging"]}}
    return {**data, **extra}


def test_everyday_merges_vocabularies_and_splits_by_subject(tmp_path):
    train, val, classes = load_splits(_everyday_data(tmp_path))
    assert classes == ["clap", "forward_punch", "jog", "wave"]
    assert {(s.source, s.subject) for s in train} == {("utd_mhad", "s1"), ("msr_action3d", "s01")}
    assert {(s.source, s.subject) for s in val} == {("utd_mhad", "s7"), ("msr_action3d", "s09")}
    assert sorted(s.label for s in val if s.source == "msr_action3d") == ["clap", "forward_punch", "wave"]
    _, _, classes = load_splits(_everyday_data(tmp_path / "b", background=["forward_punch"]))
    assert classes == sorted(["clap", "jog", "wave", BACKGROUND])


def test_a_source_without_subjects_splits_by_its_own_fraction(tmp_path):
    data = _everyday_data(tmp_path)
    msr = data["sources"]["msr_action3d"]
    del msr["val_subjects"]
    train, val, _ = load_splits(data)
    assert not [s for s in val if s.source == "msr_action3d"]  # no split asked for: all of it trains
    msr.update(val_fraction=0.5, split_seed=3)
    train, val, _ = load_splits(data)
    held_out = sorted(s.name for s in val if s.source == "msr_action3d")
    expected = stratified_split(load_sequences({"kind": "msr_action3d"}, msr["root"]), 0.5, 3)[1]
    assert held_out == sorted(s.name for s in expected) and len(held_out) == 3  # one video per class
    assert not {s.name for s in train} & set(held_out)


def test_a_validated_config_keeps_a_source_without_subjects_whole(tmp_path):
    # validation fills in defaults: the data section's val_fraction must not become the source's choice
    data = _everyday_data(tmp_path)
    del data["sources"]["msr_action3d"]["val_subjects"]
    config = validate_config({**DEFAULTS, "model": {"name": "star"}, "data": data}, "test config")
    assert "val_fraction" not in config["data"]["sources"]["msr_action3d"]
    _, val, _ = load_splits(config["data"])
    assert not [s for s in val if s.source == "msr_action3d"]
    assert {s.subject for s in val if s.source == "utd_mhad"} == {"s7"}


def test_skipped_classes_stay_unseen_in_both_splits(tmp_path):
    data = _everyday_data(tmp_path)
    data["sources"]["msr_action3d"]["skip_classes"] = ["forward_punch"]
    train, val, classes = load_splits(data)
    assert "forward_punch" not in classes
    assert "forward_punch" not in {s.label for s in train + val}
    assert len([s for s in train + val if s.source == "msr_action3d"]) == 4  # 2 classes x 2 subjects
    data["sources"]["msr_action3d"]["skip_classes"] = ["forward_kick"]
    with pytest.raises(InvalidInputError, match="skip_classes: no class forward_kick"):
        load_splits(data)


def test_everyday_errors_name_the_problem(tmp_path):
    data = _everyday_data(tmp_path)
    data["merge"]["wave"].append("clap")
    with pytest.raises(InvalidInputError, match="'clap' is merged into both"):
        load_splits(data)
    data = _everyday_data(tmp_path / "b")
    data["sources"]["utd_mhad"]["val_subjects"] = ["s4"]
    with pytest.raises(InvalidInputError, match="validation subject.*s4 not in the data"):
        load_splits(data)


def test_real_kinect_datasets_load_cleanly():
    utd = load_utd_mhad(shared_path("data/utd_mhad"))
    assert len(utd) == 431 and {s.subject for s in utd} == {"s1", "s3", "s5", "s7"}
    msr = load_msr_action3d(shared_path("data/msr_action3d"))
    assert len(msr) == 291 and all(np.abs(s.points3d[..., :3]).max() < 10 for s in msr)
    assert len(load_msr_action3d(shared_path("data/msr_action3d"), dims="2d")) == 281


def test_eval_reports_per_source_and_out_of_vocabulary_windows(tmp_path):
    import torch

    from star_har.model import build_model, save_checkpoint
    from star_har.train.evaluate import evaluate_checkpoint

    torch.manual_seed(0)
    names = ["clap", "jog", "wave"]  # forward_punch (MSR) is outside this vocabulary
    net = build_model("star", len(names), modality="pose", num_joints=20, dim=32, depth=1, num_heads=2)
    save_checkpoint(tmp_path / "ck.pt", net, model_name="star", class_names=names, joint_layout="utd20",
                    sampling=TemporalSampling(8, 1.0))
    data = _everyday_data(tmp_path / "data")
    with pytest.raises(InvalidInputError, match="unknown class.*forward_punch"):
        evaluate_checkpoint(tmp_path / "ck.pt", data=data, split="val", windows=1, output=tmp_path / "eval")
    report = evaluate_checkpoint(tmp_path / "ck.pt", data=data, split="val", windows=3, output=tmp_path / "eval",
                                 out_of_vocabulary=True)
    assert report["sequences"] == 5 and set(report["per_source"]) == {"utd_mhad", "msr_action3d"}
    assert report["per_source"]["utd_mhad"]["sequences"] == 3 and report["per_source"]["msr_action3d"]["sequences"] == 2
    opened = report["open_set"]
    assert opened["out_of_vocabulary_classes"] == ["forward_punch"] and opened["out_of_vocabulary_windows"] == 3
    assert opened["in_vocabulary_windows"] == 15 and not opened["calibrated"]
    skipped = evaluate_checkpoint(tmp_path / "ck.pt", data=data, split="val", windows=1, output=tmp_path / "eval",
                                  skip_classes=("forward_punch",))
    assert skipped["open_set"]["out_of_vocabulary_windows"] == 0 and skipped["sequences"] == 5
    only_unknown = evaluate_checkpoint(tmp_path / "ck.pt", data=data, split="val", windows=1, output=tmp_path / "oov",
                                       out_of_vocabulary=True, skip_classes=("clap", "jog", "wave"))
    assert only_unknown["sequences"] == 0 and only_unknown["open_set"]["out_of_vocabulary_windows"] == 1
    assert not (tmp_path / "oov" / "confusion.png").exists()
