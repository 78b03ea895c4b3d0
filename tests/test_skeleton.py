import numpy as np
import pytest

from star_har.model.skeleton import LAYOUTS, convert_keypoints, convert_pose, flip_keypoints, get_layout


@pytest.mark.parametrize("name,count", [("mediapipe33", 33), ("coco17", 17), ("penn13", 13), ("body16", 16),
                                        ("ntu25", 25), ("openpose25", 25)])
def test_layouts_have_expected_joints_and_valid_bones(name, count):
    layout = get_layout(name)
    assert layout.num_joints == count == len(set(layout.joint_names))
    assert layout.bones and all(0 <= a < count and 0 <= b < count and a != b for a, b in layout.bones)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_flip_permutation_is_an_involution_swapping_sides(name):
    layout = get_layout(name)
    perm = layout.flip_permutation
    assert np.array_equal(perm[perm], np.arange(layout.num_joints))
    for i, joint in enumerate(layout.joint_names):
        partner = layout.joint_names[perm[i]]
        if joint.startswith("left_"):
            assert partner == "right_" + joint[5:]
        elif not joint.startswith("right_"):
            assert partner == joint


def test_mediapipe_to_penn_copies_derives_and_keeps_confidence():
    mp = get_layout("mediapipe33")
    kp = np.zeros((2, 33, 3), np.float32)
    kp[..., 0] = np.arange(33)
    kp[..., 1] = 100 + np.arange(33)
    kp[..., 2] = 0.9
    kp[1, mp.index("left_ear"), 2] = 0.3
    penn = convert_keypoints(kp, "mediapipe33", "penn13")
    pl = get_layout("penn13")
    assert penn.shape == (2, 13, 3)
    assert penn[0, pl.index("left_wrist"), 0] == mp.index("left_wrist")
    head_x = (mp.index("left_ear") + mp.index("right_ear")) / 2
    assert penn[0, pl.index("head"), 0] == pytest.approx(head_x)
    assert penn[1, pl.index("head"), 2] == pytest.approx(0.3)  # least confident part


def test_depth_channel_converts_like_a_coordinate_after_the_confidence():
    mp = get_layout("mediapipe33")
    kp = np.zeros((2, 33, 4), np.float32)
    kp[..., 0] = np.arange(33)
    kp[..., 2] = 0.9
    kp[..., 3] = 10.0 * np.arange(33)
    kp[1, mp.index("left_ear"), 2] = 0.3
    penn = convert_pose(kp, "mediapipe33", "penn13")
    pl = get_layout("penn13")
    assert penn.shape == (2, 13, 4)
    np.testing.assert_array_equal(penn[..., :3], convert_pose(kp[..., :3], "mediapipe33", "penn13"))
    assert penn[0, pl.index("left_wrist"), 3] == 10.0 * mp.index("left_wrist")
    assert penn[0, pl.index("head"), 3] == pytest.approx(5.0 * (mp.index("left_ear") + mp.index("right_ear")))
    assert penn[1, pl.index("head"), 2] == pytest.approx(0.3)  # still the least confident part
    flipped = flip_keypoints(penn, "penn13", 100.0)
    np.testing.assert_array_equal(flipped[..., 3], penn[:, get_layout("penn13").flip_permutation, 3])


def test_missing_joints_become_invisible():
    penn = np.ones((13, 3), np.float32)
    mp = convert_keypoints(penn, "penn13", "mediapipe33")
    layout = get_layout("mediapipe33")
    assert mp[layout.index("left_eye"), 2] == 0 and mp[layout.index("left_pinky"), 2] == 0
    assert mp[layout.index("nose"), 2] == 1  # derived from the head
    body25 = convert_keypoints(penn, "penn13", "openpose25")
    assert body25[get_layout("openpose25").index("mid_hip"), 2] == 1


def test_ntu_to_coco_and_back_through_derived_joints():
    ntu = np.random.default_rng(0).uniform(0, 100, (25, 3)).astype(np.float32)
    ntu[:, 2] = 1
    coco = convert_keypoints(ntu, "ntu25", "coco17")
    layout = get_layout("ntu25")
    assert coco[0, :2] == pytest.approx(ntu[layout.index("head"), :2])  # nose from head
    assert coco[1, 2] == 0  # eyes are unknown to NTU


def test_flip_mirrors_x_and_swaps_sides():
    layout = get_layout("penn13")
    kp = np.zeros((13, 3), np.float32)
    kp[layout.index("left_wrist")] = (10, 20, 1)
    flipped = flip_keypoints(kp, "penn13", width=100)
    assert tuple(flipped[layout.index("right_wrist")]) == (90, 20, 1)
    assert np.allclose(flip_keypoints(flipped, "penn13", 100), kp)


def test_bad_layout_and_shape_errors_are_clear():
    with pytest.raises(KeyError, match="known"):
        get_layout("smpl24")
    with pytest.raises(ValueError, match="expected keypoints"):
        convert_keypoints(np.zeros((5, 17, 3)), "penn13", "coco17")


def test_body16_adds_the_nose_and_hands_from_mediapipe_and_kinect():
    body = get_layout("body16")
    mp = get_layout("mediapipe33")
    kp = np.random.default_rng(0).uniform(0, 100, (33, 3)).astype(np.float32)
    kp[:, 2] = 1
    out = convert_keypoints(kp, "mediapipe33", "body16")
    hand = (kp[mp.index("left_index"), :2] + kp[mp.index("left_pinky"), :2]) / 2
    assert out[body.index("left_hand"), :2] == pytest.approx(hand)
    assert out[body.index("nose"), :2] == pytest.approx(kp[mp.index("nose"), :2])
    utd = np.random.default_rng(1).uniform(-1, 1, (20, 4)).astype(np.float32)
    utd[:, 3] = 1
    out = convert_keypoints(utd, "utd20", "body16")
    kinect = get_layout("utd20")
    assert out[body.index("right_hand")] == pytest.approx(utd[kinect.index("right_hand")])
    assert out[body.index("nose")] == pytest.approx(utd[kinect.index("head")])  # derived: Kinect has no nose


def test_joint_stand_ins_name_the_same_joint_a_derivation_or_a_bone_neighbour():
    from star_har.model.skeleton import joint_stand_ins

    body, penn = get_layout("body16"), get_layout("penn13")
    stand_ins = dict(zip(body.joint_names, joint_stand_ins("penn13", "body16")))
    assert all(stand_ins[j] == penn.index(j) for j in penn.joint_names)
    assert stand_ins["nose"] == penn.index("head")  # derivation
    assert stand_ins["right_hand"] == penn.index("right_wrist")  # the bone neighbour
    assert joint_stand_ins("coco17", "penn13")[penn.index("head")] is not None
    stand_ins = dict(zip(get_layout("mediapipe33").joint_names, joint_stand_ins("penn13", "mediapipe33")))
    assert stand_ins["mouth_left"] is None and stand_ins["left_heel"] == penn.index("left_ankle")
