"""The pose model's additions to the paper: joint kinematics, the temporal stem, test-time flip."""

import numpy as np
import pytest
import torch

from star_har.errors import InvalidInputError
from star_har.model import build_model
from star_har.model.heatmaps import normalize_to_person_box
from star_har.model.pose_features import JointKinematics, TemporalStem, neighbour_matrix
from star_har.model.skeleton import get_layout
from star_har.train.engine import build_network, widen_input_columns, with_test_flip
from tests.test_star import random_keypoints

torch.manual_seed(0)
POSE = dict(modality="pose", num_joints=13, layout="penn13", dim=32, depth=1, num_heads=2, dropout=0.0,
            joint_features=["field", "kinematics"], temporal_kernel=3)


def boxed_window(batch=2, frames=8):
    keypoints = random_keypoints(batch, frames, 13, 200)
    return normalize_to_person_box(keypoints, 0.2)


def test_kinematics_shapes_and_values_of_a_still_pose():
    boxed = boxed_window()
    boxed[:, 1:] = boxed[:, :1]  # the same pose in every frame: no motion
    features = JointKinematics("penn13")(boxed, boxed[..., 2] > 0.2)
    assert features.shape == (2, 8, 13, 7)
    assert torch.all(features[..., 4:6] == 0) and torch.all(features[..., 6] == 1)
    # bone of the head = head minus the mean of its neighbours (both shoulders), scaled like position
    head, shoulders = boxed[0, 0, 0, :2], boxed[0, 0, 1:3, :2].mean(0)
    assert torch.allclose(features[0, 0, 0, 2:4] / 8.0, head - shoulders, atol=1e-6)


def test_neighbours_are_the_layouts_bones():
    adjacency = neighbour_matrix("penn13")
    assert torch.equal(adjacency, adjacency.T) and adjacency.diagonal().sum() == 0
    assert adjacency.sum() == 2 * len(get_layout("penn13").bones)


def test_kinematics_are_flip_equivariant():
    """Mirroring the window maps each joint's features to its twin's, with x components negated."""
    boxed = boxed_window()
    perm = torch.as_tensor(get_layout("penn13").flip_permutation)
    mirrored = boxed[:, :, perm].clone()
    mirrored[..., 0] = 1.0 - mirrored[..., 0]
    kinematics = JointKinematics("penn13")
    features = kinematics(boxed, boxed[..., 2] > 0.2)
    expected = features[:, :, perm].clone()
    expected[..., [0, 2, 4]] *= -1  # x of position, bone, motion
    assert torch.allclose(kinematics(mirrored, mirrored[..., 2] > 0.2), expected, atol=1e-5)


def with_depth(boxed: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``boxed`` (B, T, J, 3) with a random boxed depth channel appended."""
    depth = torch.rand(boxed.shape[:3] + (1,), generator=torch.Generator().manual_seed(seed)) - 0.5
    return torch.cat((boxed, depth), dim=-1)


def test_depth_appends_its_position_bone_and_motion_after_the_2d_features():
    boxed = with_depth(boxed_window())
    visible = boxed[..., 2] > 0.2
    planar = JointKinematics("penn13")(boxed[..., :3], visible)
    features = JointKinematics("penn13", depth=True)(boxed, visible)
    assert features.shape == (2, 8, 13, 10)
    assert torch.equal(features[..., :7], planar)  # a model without depth widens by new columns only
    depth = boxed[..., 3]
    assert torch.allclose(features[..., 7] / 4.0, depth, atol=1e-6)
    assert torch.allclose(features[0, 0, 0, 8] / 8.0, depth[0, 0, 0] - depth[0, 0, 1:3].mean(), atol=1e-6)
    assert torch.allclose(features[:, :-1, :, 9] / 24.0, depth[:, 1:] - depth[:, :-1], atol=1e-6)
    # mirroring leaves depth alone: each joint's depth features become its twin's, unchanged
    perm = torch.as_tensor(get_layout("penn13").flip_permutation)
    mirrored = boxed[:, :, perm].clone()
    mirrored[..., 0] = 1.0 - mirrored[..., 0]
    flipped = JointKinematics("penn13", depth=True)(mirrored, mirrored[..., 2] > 0.2)
    assert torch.allclose(flipped[..., 7:], features[:, :, perm, 7:], atol=1e-6)


def test_person_box_centres_depth_and_scales_it_like_x_and_y():
    keypoints = random_keypoints(1, 4, 13, 200)
    keypoints[..., 2] = 1.0
    keypoints[0, 2, 4, 2] = 0.0  # unseen: its depth is neither counted nor kept
    depth = torch.rand(1, 4, 13, 1) * 50 + 1000.0
    boxed = normalize_to_person_box(torch.cat((keypoints, depth), dim=-1), 0.2)
    seen = keypoints[..., 2] > 0.2
    side = (keypoints[..., :2][seen].amax(0) - keypoints[..., :2][seen].amin(0)).max() * 1.2
    assert torch.allclose(boxed[..., :3], normalize_to_person_box(keypoints, 0.2))
    expected = (depth[..., 0] - depth[..., 0][seen].mean()) / side * seen
    assert torch.allclose(boxed[..., 3], expected, atol=1e-5)
    # twice as large and twice as deep: the same boxed window
    doubled = normalize_to_person_box(torch.cat((keypoints * torch.tensor([2.0, 2.0, 1.0]), depth * 2), dim=-1), 0.2)
    assert torch.allclose(doubled, boxed, atol=1e-5)


def test_depth_fine_tune_starts_where_its_checkpoint_stood():
    """Switching joint_depth on adds zero input columns: the widened model computes what the
    checkpoint did whatever the depth, and depth then reaches the logits through the new columns."""
    plain = build_model("star", 4, **POSE).eval()
    widened = build_model("star", 4, joint_depth=True, **POSE).eval()
    weights, padded = widen_input_columns(widened, plain.state_dict())
    assert padded == {"kinematics_embed.0.weight"}
    widened.load_state_dict(weights)
    keypoints = torch.cat((random_keypoints(2, 8, 13, 200), torch.randn(2, 8, 13, 1) * 30), dim=-1)
    with torch.no_grad():
        assert torch.allclose(widened(None, keypoints).logits, plain(None, keypoints[..., :3]).logits, atol=1e-5)
        assert torch.equal(plain(None, keypoints).logits, plain(None, keypoints[..., :3]).logits)  # ignores depth
        widened.kinematics_embed[0].weight[:, 7:].normal_()
        assert not torch.allclose(widened(None, keypoints).logits, plain(None, keypoints[..., :3]).logits)
    with pytest.raises(InvalidInputError, match="4 keypoint channels"):
        widened(None, keypoints[..., :3])
    with pytest.raises(InvalidInputError, match="joint_depth needs"):
        build_model("star", 4, **{**POSE, "joint_features": ["field"]}, joint_depth=True)


@pytest.mark.parametrize("depth", [False, True])
def test_invisible_joints_contribute_nothing_but_their_flag(depth):
    boxed = with_depth(boxed_window()) if depth else boxed_window()
    visible = torch.ones(boxed.shape[:3], dtype=torch.bool)
    visible[:, :, 5] = False          # left wrist never seen
    visible[:, 3, 9] = False          # left knee missing in one frame
    kinematics = JointKinematics("penn13", depth)
    features = kinematics(boxed, visible)
    assert torch.all(features[:, :, 5] == 0) and torch.all(features[:, 3, 9] == 0)
    # moving the unseen joints anywhere (and to any depth) changes no feature
    moved = boxed.clone()
    moved[:, :, 5, [0, 1, -1]] += 0.3
    moved[:, 3, 9, [0, 1, -1]] -= 0.2
    assert torch.equal(kinematics(moved, visible), features)


def test_temporal_stem_mixes_only_neighbouring_frames_of_the_same_joint():
    stem = TemporalStem(16, kernel=3).eval()
    tokens = torch.randn(1, 10, 4, 16)
    changed = tokens.clone()
    changed[0, 5, 2] += 1.0
    diff = (stem(changed) - stem(tokens)).abs().sum(-1)[0]  # (T, J)
    assert diff[4:7, 2].min() > 0
    assert diff[:, [0, 1, 3]].max() == 0 and diff[[0, 1, 2, 3, 7, 8, 9], 2].max() == 0


def test_pose_model_with_kinematics_trains_end_to_end():
    net = build_model("star", 4, **POSE)
    out = net(None, random_keypoints(2, 8, 13, 300))
    out.logits.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing


def test_flip_test_is_invariant_to_mirroring_the_input():
    net = build_model("star", 4, **POSE, flip_test=True).eval()
    keypoints = random_keypoints(2, 8, 13, 300)
    mirrored = keypoints[:, :, get_layout("penn13").flip_permutation].clone()
    mirrored[..., 0] = 640 - mirrored[..., 0]
    with torch.no_grad():
        out, out_mirrored = net(None, keypoints), net(None, mirrored)
    assert torch.allclose(out.logits, out_mirrored.logits, atol=1e-5)
    assert not torch.allclose(net.classify(None, keypoints).logits, out.logits)


def test_flip_test_reads_the_mirror_image_through_the_mirror_classes():
    """Class 0 and 1 are each other's mirror image (swipe_left / swipe_right): the window's scores
    for 0 are the mirrored window's scores for 1."""
    mirror = [1, 0, 2, 3]
    net = build_model("star", 4, **POSE, flip_test=True, mirror_classes=mirror).eval()
    keypoints = random_keypoints(2, 8, 13, 300)
    mirrored = keypoints[:, :, get_layout("penn13").flip_permutation].clone()
    mirrored[..., 0] = 640 - mirrored[..., 0]
    with torch.no_grad():
        out, out_mirrored = net(None, keypoints), net(None, mirrored)
    assert torch.allclose(out.logits, out_mirrored.logits[:, mirror], atol=1e-5)
    assert not torch.allclose(out.logits, out_mirrored.logits, atol=1e-3)
    assert torch.allclose(out.frame_importance, out_mirrored.frame_importance, atol=1e-5)


def test_training_gives_the_flip_its_vocabulary_mirror_table():
    cfg = {"data": {"frames_per_window": 8, "window_seconds": 1.0},
           "model": {"name": "star", **{k: v for k, v in POSE.items() if k != "num_joints"}, "flip_test": True}}
    net, _, _ = build_network(cfg, ["swipe_left", "wave", "swipe_right"])
    assert net.class_mirror.tolist() == [2, 1, 0] and net.hparams["mirror_classes"] == [2, 1, 0]
    with pytest.raises(InvalidInputError, match="no test-time flip"):
        with_test_flip("deformable", {}, ["wave"], flip_test=True)


@pytest.mark.parametrize("bad", [dict(dim=33, num_heads=3), dict(joint_features=["rgb"]), dict(temporal_kernel=4),
                                 dict(layout=None), dict(layout="coco17"), dict(mirror_classes=[1, 1, 2, 3]),
                                 dict(mirror_classes=[1, 2, 0, 3]), dict(mirror_classes=[0, 1])])
def test_bad_pose_settings_are_one_line_errors(bad):
    with pytest.raises(InvalidInputError):
        build_model("star", 4, **{**POSE, **bad})


def test_old_checkpoints_keep_their_meaning():
    """A model saved before the additions (no new keys) builds as the paper's model."""
    net = build_model("star", 4, modality="pose", num_joints=13, dim=32, depth=1, num_heads=2)
    assert net.kinematics is None and net.stem is None and not net.flip_test
    assert np.isclose(net(None, random_keypoints(1, 4, 13, 100)).frame_importance.sum().item(), 1.0)


def test_webcam_perturbations_do_what_they_say():
    from star_har.train.augment import perturb_keypoints

    keypoints = random_keypoints(1, 16, 13, 200)[0].numpy()
    rng = np.random.default_rng(0)
    legs = perturb_keypoints(keypoints, "penn13", "legs", rng)
    assert np.all(legs[:, 9:, 2] == 0) and np.array_equal(legs[:, :9], keypoints[:, :9])
    jittered = perturb_keypoints(keypoints, "penn13", "jitter", rng)
    size = np.ptp(keypoints[..., :2].reshape(-1, 2), axis=0).max()
    assert np.std(jittered[..., :2] - keypoints[..., :2]) == pytest.approx(0.05 * size, rel=0.15)
    mixed = perturb_keypoints(keypoints, "penn13", "mediapipe", rng)
    assert 0.03 < np.mean(mixed[..., 2] == 0) < 0.2
    with pytest.raises(InvalidInputError):
        perturb_keypoints(keypoints, "penn13", "fog", rng)
