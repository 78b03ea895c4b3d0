"""Loaders of every dataset format, window sampling and augmentation invariants."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from train_fixtures import STANDING, make_npz_dataset, moving_skeleton, skeleton_text, write_penn_mat

from star_har.model import TemporalSampling, get_layout
from star_har.model.skeleton import flip_keypoints
from star_har.model.vocabulary import mirror_classes
from star_har.train.augment import AugmentConfig, augment_keypoints
from star_har.train.datasets.base import Sequence, stratified_split
from star_har.train.datasets.clips import load_clip_folder, pose_cache_folder
from star_har.train.datasets.npz import load_npz, load_npz_folder, save_npz
from star_har.train.datasets.ntu import load_ntu, read_skeleton, split_of
from star_har.train.datasets.penn import load_penn_action, load_penn_mat
from star_har.train.sampling import balanced_repeats, evaluation_windows, random_window, window_at
from star_har.train.windows import WindowDataset

PENN = get_layout("penn13")


def test_penn_mat_masks_invisible_joints(tmp_path):
    kps = write_penn_mat(tmp_path / "0001.mat", num_frames=20)
    seq = load_penn_mat(tmp_path / "0001.mat")
    assert (seq.label, seq.layout, seq.fps, seq.width, seq.height, seq.split) == ("squat", "penn13", 30.0, 320, 240, "train")
    assert seq.keypoints.shape == (20, 13, 3)
    # Penn's "r_shoulder" (file joint 2) is the person's left: loaded as left_shoulder (joint 1).
    assert np.all(seq.keypoints[:, 1] == 0)  # invisible joint: no confidence and no position
    np.testing.assert_allclose(seq.keypoints[:, :, :2], np.round(kps[:, PENN.flip_permutation, :2]) * (seq.keypoints[..., 2:] > 0))
    assert np.all(seq.keypoints[:, [0, 2, 3], 2] == 1)


def test_penn_folder_with_frames_and_bad_inputs(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    write_penn_mat(labels / "0001.mat")
    (tmp_path / "frames" / "0001").mkdir(parents=True)
    seqs = load_penn_action(tmp_path)
    assert len(seqs) == 1 and seqs[0].frames == tmp_path / "frames" / "0001"
    (labels / "0002.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(ValueError, match="corrupt Penn Action file .*0002.mat") as err:
        load_penn_action(tmp_path)
    assert "\n" not in str(err.value)
    assert len(load_penn_action(tmp_path, skip_corrupt=True)) == 1
    with pytest.raises(FileNotFoundError, match="Penn Action folder not found"):
        load_penn_action(tmp_path / "missing")


def test_ntu_skeleton_picks_the_actor_and_splits(tmp_path):
    num_frames = 12
    rng = np.random.default_rng(0)
    actor = rng.uniform(500, 900, (num_frames, 25, 2))
    bystander = np.full((num_frames, 25, 2), 100.0)
    bystander[8:] = np.nan  # leaves the scene
    name = "S002C001P004R001A023"
    (tmp_path / f"{name}.skeleton").write_text(skeleton_text(num_frames, {"7": bystander, "9": actor}))
    kps = read_skeleton(tmp_path / f"{name}.skeleton")
    assert kps.shape == (num_frames, 25, 3)
    np.testing.assert_allclose(kps[..., :2], actor, atol=1e-3)
    assert np.all(kps[:, 3, 2] == 0.5) and np.all(kps[:, 0, 2] == 1.0)  # inferred joint: 0.5
    (seq,) = load_ntu(tmp_path, protocol="xview")
    assert (seq.label, seq.layout, seq.split) == ("hand_waving", "ntu25", "test")
    assert split_of(name, "xsub") == "train" and split_of(name, "xset") == "train"
    assert split_of("S001C002P003R001A001", "xsub") == "test"


def test_npz_round_trip_and_errors(tmp_path):
    kps = moving_skeleton("squat", 25, np.random.default_rng(0))
    save_npz(tmp_path / "a.npz", kps, "penn13", "squat", fps=25.0, split="val")
    seq = load_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(seq.keypoints, kps)
    assert (seq.label, seq.fps, seq.split, seq.layout) == ("squat", 25.0, "val", "penn13")
    np.savez(tmp_path / "b.npz", keypoints=kps, layout="penn13")
    with pytest.raises(ValueError, match="missing array label"):
        load_npz_folder(tmp_path)
    with pytest.raises(ValueError, match=r"\(T, 17, 3 or 4\)"):
        save_npz(tmp_path / "c.npz", kps, "coco17", "x")
    deep = np.concatenate((kps, np.random.default_rng(1).normal(0, 20, kps.shape[:2] + (1,))), axis=-1)
    save_npz(tmp_path / "d.npz", deep, "penn13", "squat")  # with the depth channel
    np.testing.assert_allclose(load_npz(tmp_path / "d.npz").keypoints, deep, rtol=1e-6)
    with pytest.raises(ValueError, match="3 or 4"):
        save_npz(tmp_path / "e.npz", deep[..., :2], "penn13", "squat")


def _write_video(path, frames: int, size=(64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (i * 8) % 255, np.uint8))
    writer.release()


def test_clip_folder_skips_empty_and_personless_clips(tmp_path, pose_model_path, tai_chi_video, monkeypatch):
    data = tmp_path / "data"
    (data / "wave").mkdir(parents=True)
    (data / "tai_chi").mkdir()
    _write_video(data / "wave" / "blank.avi", 10)            # nobody in it
    (data / "wave" / "empty.mp4").write_bytes(b"")            # not a video at all
    capture = cv2.VideoCapture(str(tai_chi_video))
    writer = None
    for _ in range(12):
        ok, frame = capture.read()
        writer = writer or cv2.VideoWriter(str(data / "tai_chi" / "a.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                           30.0, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    writer.release()
    monkeypatch.setenv("STAR_HAR_CACHE", str(tmp_path / "cache"))
    before = sorted(data.rglob("*"))
    for path in [data, *before]:  # the data folder is read-only (as ../shared is in CI)
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        (seq,) = load_clip_folder(data, pose_model=str(pose_model_path))
        assert sorted(data.rglob("*")) == before
    finally:
        for path in [data, *before]:
            path.chmod(path.stat().st_mode | 0o200)
    assert (seq.label, seq.layout, seq.keypoints.shape) == ("tai_chi", "mediapipe33", (12, 33, 4))  # with depth
    assert (seq.keypoints[..., 2] > 0.5).mean() > 0.5
    cache = pose_cache_folder(data)
    assert cache.parent == tmp_path / "cache" / "poses"
    assert sorted(p.name for p in (cache / "wave").iterdir()) == ["blank.skip", "empty.skip"]
    # Second run: everything is cached, MediaPipe is not needed (a bad model path would fail).
    assert len(load_clip_folder(data, pose_model=str(tmp_path / "missing.task"))) == 1


def test_clip_pose_caches_of_two_roots_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_HAR_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "clips", tmp_path / "b" / "clips"
    assert pose_cache_folder(first) != pose_cache_folder(second)
    assert pose_cache_folder(first) == pose_cache_folder(tmp_path / "a" / ".." / "a" / "clips")


def test_clip_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="clips folder not found"):
        load_clip_folder(tmp_path / "nothing")
    (tmp_path / "wave").mkdir()
    with pytest.raises(FileNotFoundError, match="no video clips"):
        load_clip_folder(tmp_path)


def test_windows_follow_the_ring_buffer_spacing():
    sampling = TemporalSampling(16, 1.6)  # 0.1 s apart = 3 frames at 30 fps
    idx = window_at(100, 30.0, sampling, 0.0)
    assert idx.tolist() == list(range(0, 46, 3))
    assert window_at(100, 30.0, sampling, 1.0)[-1] == 99
    short = window_at(20, 30.0, sampling, 0.5)  # shorter than a window: spread, frames repeat
    assert short[0] == 0 and short[-1] == 19 and len(short) == 16 and np.all(np.diff(short) >= 0)
    windows = evaluation_windows(100, 30.0, sampling, 3)
    assert windows.shape == (3, 16) and windows[0, 0] == 0 and windows[-1, -1] == 99
    rng = np.random.default_rng(0)
    fast = random_window(300, 30.0, sampling, rng, (1.5, 1.5))
    assert np.all(np.abs(np.diff(fast) - 4.5) <= 1)


def test_flip_swaps_left_and_right_joints():
    kps = np.concatenate((STANDING, np.ones((13, 1), np.float32)), axis=1)[None].repeat(4, axis=0)
    kps[:, PENN.index("left_wrist"), 1] = 10  # left hand raised
    cfg = AugmentConfig(scale=(1, 1), aspect=0, rotation_degrees=0, shear=0, joint_offset=0, jitter=0,
                        joint_dropout=0, point_dropout=0, frame_dropout=0, lower_body_dropout=0)
    out = augment_keypoints(kps, "penn13", 200, cfg, np.random.default_rng(0), flip=True)
    np.testing.assert_allclose(out, flip_keypoints(kps, "penn13", 200))
    right, left = PENN.index("right_wrist"), PENN.index("left_wrist")
    assert np.all(out[:, right, 1] == 10) and np.all(out[:, left, 1] != 10)
    np.testing.assert_allclose(out[:, right, 0], 200 - kps[:, left, 0])
    np.testing.assert_allclose(out[:, PENN.index("head")], kps[:, PENN.index("head")] * [-1, 1, 1] + [200, 0, 0])


def test_mirror_classes_pair_left_with_right():
    names = ["swipe_left", "swipe_right", "wave", "draw_circle_cw", "draw_circle_ccw", "turn_left"]
    assert mirror_classes(names) == [1, 0, 2, 4, 3, 5]  # turn_right is no class: turn_left stays


def test_a_flipped_training_window_takes_its_mirror_class():
    """A swipe to the left seen in a mirror is a swipe to the right: the flipped window must say so."""
    kps = np.concatenate((STANDING, np.ones((13, 1), np.float32)), axis=1)[None].repeat(30, axis=0)
    kps[:, PENN.index("right_wrist"), 0] -= np.linspace(0, 60, 30)  # the right hand moves to smaller x
    seqs = [Sequence("a", "swipe_left", kps, "penn13", 30.0, 200.0, 200.0)]
    only_flip = AugmentConfig(flip=0.5, scale=(1, 1), aspect=0, rotation_degrees=0, shear=0, joint_offset=0,
                              jitter=0, joint_dropout=0, point_dropout=0, frame_dropout=0, lower_body_dropout=0)
    data = WindowDataset(seqs, ["swipe_left", "swipe_right"], "penn13", TemporalSampling(), only_flip, repeats=20)
    labels = [int(data[i]["label"]) for i in range(len(data))]
    assert set(labels) == {0, 1}
    for i, label in enumerate(labels):
        x = data[i]["keypoints"][..., 0].numpy()
        # unflipped: the right hand moves left; flipped (swipe_right): the mirrored hand, now the left one, moves right
        hand = PENN.index("left_wrist") if label == 1 else PENN.index("right_wrist")
        assert (x[-1, hand] - x[0, hand] > 0) == (label == 1), (i, label)


def test_augmentation_keeps_invisible_joints_invisible_and_moves_the_rest():
    kps = np.concatenate((STANDING, np.ones((13, 1), np.float32)), axis=1)[None].repeat(16, axis=0)
    kps[:, 4] = 0
    for seed in range(20):
        out = augment_keypoints(kps, "penn13", 200, AugmentConfig(), np.random.default_rng(seed), flip=False)
        assert out.shape == kps.shape and np.all(out[:, 4] == 0)
        assert (out[..., 2] > 0).any() and not np.allclose(out, kps)


def test_augmented_depth_is_jittered_like_x_and_y_and_dropped_with_its_joint():
    kps = np.concatenate((STANDING, np.ones((13, 1), np.float32), np.zeros((13, 1), np.float32)), axis=1)
    kps = kps[None].repeat(16, axis=0)
    kps[:, 4] = 0
    jitter_only = AugmentConfig(flip=0.0, scale=(1.0, 1.0), aspect=0.0, rotation_degrees=0.0, shear=0.0,
                                joint_offset=0.0, jitter=0.05, joint_dropout=0.0, point_dropout=0.0,
                                frame_dropout=0.0, lower_body_dropout=0.0)
    out = augment_keypoints(kps, "penn13", 200, jitter_only, np.random.default_rng(3), flip=False)
    plain = augment_keypoints(kps[..., :3], "penn13", 200, jitter_only, np.random.default_rng(3), flip=False)
    np.testing.assert_array_equal(out[..., :3], plain)  # the 2-D augmentation draws the same with depth
    shift = out[:, np.arange(13) != 4, 3]
    assert 0 < shift.std() < 0.05 * np.ptp(STANDING[:, 1]) and np.all(out[:, 4] == 0)
    for seed in range(10):
        dropped = augment_keypoints(kps, "penn13", 200, AugmentConfig(), np.random.default_rng(seed), flip=True)
        assert dropped.shape == kps.shape and np.all(dropped[dropped[..., 2] == 0] == 0)


def test_window_dataset_rejects_unknown_classes_and_is_seeded(tmp_path):
    seqs = load_npz_folder(make_npz_dataset(tmp_path, per_class=2))
    with pytest.raises(ValueError, match="unknown class"):
        WindowDataset(seqs, ["squat"], "penn13", TemporalSampling(), AugmentConfig())
    names = sorted({s.label for s in seqs})
    data = WindowDataset(seqs, names, "coco17", TemporalSampling(), AugmentConfig(), repeats=2)
    assert len(data) == 12 and data[0]["keypoints"].shape == (16, 17, 3)
    assert np.array_equal(data[3]["keypoints"], data[3]["keypoints"])
    data.set_epoch(1)
    assert not np.array_equal(data[3]["keypoints"], WindowDataset(seqs, names, "coco17", TemporalSampling(),
                                                                  AugmentConfig(), repeats=2)[3]["keypoints"])
    kept, held = stratified_split(seqs, 0.5, 0)
    assert len(held) == 3 and {s.label for s in held} == set(names)


def test_balanced_repeats_give_small_classes_more_of_the_epoch():
    groups = [("biisc", "wave")] * 72 + [("utd", "wave")] * 12 + [("utd", "clap")] * 12
    assert np.array_equal(balanced_repeats(groups, 4, 0.0), np.full(96, 4))
    for power in (0.5, 1.0):
        counts = balanced_repeats(groups, 4, power)
        assert counts.sum() == 96 * 4  # the epoch keeps its length
        per_group = [counts[:72].sum(), counts[72:84].sum(), counts[84:].sum()]
        expected = np.array([72, 12, 12], float) ** (1 - power)
        np.testing.assert_allclose(per_group, 96 * 4 * expected / expected.sum(), atol=1)
        assert counts[:72].max() - counts[:72].min() <= 1  # within a group: as even as integers allow
    assert np.array_equal(balanced_repeats(groups, 4, 0.5), balanced_repeats(groups, 4, 0.5))


def test_a_class_balanced_dataset_draws_rare_classes_more_often(tmp_path):
    seqs = load_npz_folder(make_npz_dataset(tmp_path, per_class=2))
    names = sorted({s.label for s in seqs})
    rare = seqs[:1] + [s for s in seqs if s.label != seqs[0].label]  # one sequence of the first class
    plain = WindowDataset(rare, names, "coco17", TemporalSampling(), AugmentConfig(), repeats=6)
    balanced = WindowDataset(rare, names, "coco17", TemporalSampling(), AugmentConfig(), repeats=6, class_balance=1.0)
    assert len(plain) == len(balanced) == 6 * len(rare)

    def windows_of_first_class(data):
        return sum(int(data[i]["label"]) == names.index(seqs[0].label) for i in range(len(data)))

    assert windows_of_first_class(plain) == 6
    assert windows_of_first_class(balanced) == len(balanced) // len(names)
    # unbalanced, item i is still sequence i % N: the random windows of runs before the option
    assert [int(plain[i]["sequence"]) for i in range(len(plain))] == [i % len(rare) for i in range(len(plain))]


def _penn_video_with_frames(root) -> list:
    """One 20-frame Penn Action sequence whose 320x240 frames are red on the left half (BGR)."""
    labels = root / "labels"
    labels.mkdir()
    write_penn_mat(labels / "0001.mat", num_frames=20)
    frames = root / "frames" / "0001"
    frames.mkdir(parents=True)
    for i in range(20):
        image = np.zeros((240, 320, 3), np.uint8)
        image[:, :160] = (0, 0, 255)
        cv2.imwrite(str(frames / f"{i + 1:06d}.jpg"), image)
    return load_penn_action(root)


def test_rgb_windows_read_penn_frames_and_rescale_keypoints(tmp_path):
    seqs = _penn_video_with_frames(tmp_path)
    data = WindowDataset(seqs, ["squat"], "penn13", TemporalSampling(16, 0.5), None, modality="rgb+pose",
                         image_size=64)
    item = data[0]
    assert item["frames"].shape == (3, 16, 64, 64) and item["keypoints"].shape == (16, 13, 3)
    red = item["frames"][0, 0]
    assert red[:, :30].mean() > red[:, 34:].mean() + 1  # RGB order, not flipped in evaluation
    visible = item["keypoints"][..., 2] > 0
    assert item["keypoints"][..., 0][visible].max() <= 64 and item["keypoints"][..., 1][visible].max() <= 64
    with pytest.raises(ValueError, match="needs RGB frames"):
        WindowDataset(load_npz_folder(make_npz_dataset(tmp_path / "npz", per_class=1)), ["arms_up", "squat", "wave"],
                      "penn13", TemporalSampling(), None, modality="rgb+pose")


def test_rgb_evaluation_crops_at_the_size_the_checkpoint_was_trained_on(tmp_path):
    from star_har.model import Checkpoint
    from star_har.realtime.engines.base import ModelSpec

    seqs = _penn_video_with_frames(tmp_path)

    def checkpoint(modality: str, meta: dict) -> Checkpoint:
        return Checkpoint("star", 1, {"modality": modality, "num_joints": 13}, ["squat"], "penn13",
                          TemporalSampling(16, 0.5), {}, meta)

    trained_at_64 = checkpoint("rgb+pose", {"input_size": [64, 64]})
    assert trained_at_64.input_size == (64, 64) == ModelSpec.from_checkpoint(trained_at_64).input_size
    assert WindowDataset.for_checkpoint(trained_at_64, seqs, 1)[0]["frames"].shape == (3, 16, 64, 64)
    older = checkpoint("rgb+pose", {})  # written before checkpoints recorded their crop size
    assert WindowDataset.for_checkpoint(older, seqs, 1)[0]["frames"].shape == (3, 16, 112, 112)
    assert checkpoint("pose", {"input_size": [64, 64]}).input_size is None
