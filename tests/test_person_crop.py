"""The RGB stream's person-centred crop: its maths, and the same crop for training and live windows."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from star_har.errors import InvalidInputError
from star_har.model import TemporalSampling
from star_har.model.backbone import KINETICS_MEAN, KINETICS_STD
from star_har.model.crop import (
    CROP_MARGIN,
    MIN_BOX_FRACTION,
    WORKING_FACTOR,
    crop_joints,
    crop_window,
    person_boxes,
    person_crop,
    working_frame,
)
from star_har.model.skeleton import get_layout
from star_har.realtime.capture import Frame
from star_har.realtime.ring_buffer import RingBuffer
from star_har.train.datasets.base import Sequence
from star_har.train.windows import WindowDataset


def person(x0: float, y0: float, x1: float, y1: float, frames: int = 4, joints: int = 13) -> np.ndarray:
    """Keypoints ``(T, J, 3)`` of a person standing still, spread over the box (x0, y0)-(x1, y1),
    corners included."""
    rng = np.random.default_rng(0)
    kps = np.ones((joints, 3), np.float32)
    kps[:, 0] = rng.uniform(x0, x1, joints)
    kps[:, 1] = rng.uniform(y0, y1, joints)
    kps[0, :2], kps[1, :2] = (x0, y0), (x1, y1)
    return np.repeat(kps[None], frames, axis=0)


def box(kps, frame_size=(480, 640), size=(112, 112)) -> tuple[int, ...]:
    """The window's box when it does not move (asserted)."""
    boxes = person_boxes(kps, frame_size, size)
    assert (boxes == boxes[0]).all()
    return tuple(int(v) for v in boxes[0])


def test_a_standing_persons_box_is_still_and_holds_every_visible_joint_with_margin():
    kps = person(200, 100, 240, 190)  # 40 x 90 px person in a 480 x 640 frame
    kps[2, 5] = (5.0, 5.0, 0.1)       # a low-confidence joint does not shape the box
    x0, y0, width, height = box(kps[[0, 1, 3]])
    assert width == height == round(90 * (1 + 2 * CROP_MARGIN))
    assert (x0 + width / 2, y0 + height / 2) == pytest.approx((220, 145), abs=0.5)
    # the box takes the model's aspect ratio (W / H = 2 here) and keeps the person's extent
    x0, y0, width, height = box(kps[[0, 1, 3]], size=(64, 128))
    assert width == 2 * height and height >= 90 * (1 + 2 * CROP_MARGIN) - 1


def test_the_crop_follows_a_walking_person_at_their_own_size():
    """Across the frame in one window: one box around the whole path made the person a few
    pixels tall; the crop follows them along a line and stays their size."""
    walk = person(0, 100, 40, 190, frames=8)
    walk[..., 0] += np.arange(8)[:, None] * 60.0     # 60 px a frame to the right
    boxes = person_boxes(walk, (480, 640), (112, 112))
    assert (boxes[:, 2:] == round(90 * (1 + 2 * CROP_MARGIN))).all()  # one size: the person's
    centres = boxes[:, 0] + boxes[:, 2] / 2
    assert np.diff(centres[1:-1]) == pytest.approx(60, abs=1)          # a pan (the ends shift inside)
    x0, y0, width, height = boxes.T[:, :, None]
    inside = ((walk[..., 0] >= x0) & (walk[..., 0] <= x0 + width) & (walk[..., 1] >= y0) & (walk[..., 1] <= y0 + height))
    assert inside.all()


def test_box_is_shifted_inside_the_frame_padded_when_larger_and_has_fallbacks():
    assert box(person(0, 0, 30, 60))[:2] == (0, 0)       # shifted in
    assert box(person(600, 400, 639, 479))[:2] == (640 - 120, 480 - 120)
    x0, y0, width, height = box(person(0, 0, 639, 479))  # larger: centred
    assert width == height == round(639 * (1 + 2 * CROP_MARGIN)) and x0 < 0 and y0 < 0
    assert x0 + width / 2 == pytest.approx(320, abs=1) and y0 + height / 2 == pytest.approx(240, abs=1)
    assert box(person(100, 100, 101, 101))[3] == MIN_BOX_FRACTION * 480
    nobody = np.zeros((4, 13, 3), np.float32)
    assert box(nobody) == (0, -80, 640, 640)  # whole frame, letterboxed


def test_training_jitter_is_random_but_bounded():
    kps = person(200, 100, 240, 190)
    base = box(kps)
    boxes = []
    for i in range(20):
        window = person_boxes(kps, (480, 640), (112, 112), 0.1, np.random.default_rng(i))
        assert (window == window[0]).all()  # one jitter for the whole window
        boxes.append(tuple(int(v) for v in window[0]))
    assert len(set(boxes)) > 10
    for x0, y0, width, height in boxes:
        assert 0.9 * base[3] - 1 <= height <= 1.1 * base[3] + 1
        assert abs(x0 + width / 2 - 220) <= 0.1 * width + 0.1 * base[2] + 1
        assert abs(y0 + height / 2 - 145) <= 0.1 * height + 0.1 * base[3] + 1


def test_crop_maps_keypoints_onto_their_pixels_and_pads_with_the_mean_colour():
    frames = np.zeros((2, 120, 160, 3), np.uint8)
    frames[:, 30:34, 100:104] = 255  # a white dot centred on (101.5, 31.5)
    kps = np.array([[[101.5, 31.5, 1.0]], [[101.5, 31.5, 0.0]]], np.float32)
    video, mapped = crop_window(frames, kps, (32, 32), np.array([(90, 10, 40, 40)] * 2))  # 40 px box -> 32 px
    assert video.shape == (3, 2, 32, 32) and video.dtype == np.float32
    x, y = mapped[0, 0, :2]
    assert (x, y) == pytest.approx(((101.5 - 90) * 0.8, (31.5 - 10) * 0.8))
    assert video[:, 0, int(y), int(x)].min() > 1.5               # white there
    np.testing.assert_array_equal(mapped[..., 2], kps[..., 2])   # confidence kept
    padded, _ = crop_window(frames, kps, (32, 32), np.array([(-40, -40, 80, 80)] * 2))
    assert np.abs(padded[:, :, :8, :8]).max() < 0.02             # padding normalises to ~0
    black = -np.array(KINETICS_MEAN) / np.array(KINETICS_STD)
    np.testing.assert_allclose(padded[:, 0, 31, 31], black, rtol=1e-5)


def test_working_copies_bound_the_frame_size_and_carry_the_keypoints():
    image = np.zeros((1080, 1920, 3), np.uint8)
    kps = np.array([[960.0, 540.0, 0.9]], np.float32)
    small, moved = working_frame(image, kps, (112, 112))
    assert WORKING_FACTOR == 3 and small.shape == (360, 640, 3)  # 1080 // 336 = 3: a third, >= 336
    assert moved[0] == pytest.approx([320.0, 180.0, 0.9])
    same, kept = working_frame(small, moved, (112, 112))
    assert same is small and kept is moved


def test_the_upper_body_crop_is_drawn_around_the_arms_and_head_only():
    layout = get_layout("penn13")
    upper = crop_joints("upper_body", "penn13")
    assert [layout.joint_names[i] for i in upper] == ["head", "left_shoulder", "right_shoulder", "left_elbow",
                                                      "right_elbow", "left_wrist", "right_wrist"]
    assert crop_joints("body", "penn13") is None
    assert len(crop_joints("upper_body", "body16")) == 10        # + nose and hands
    kps = person(200, 50, 300, 450)                             # a person 400 px tall
    legs = [layout.index(n) for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")]
    kps[:, upper, 1] = np.linspace(50, 150, len(upper))         # head and arms in the top 100 px
    kps[:, legs, 1] = 450.0
    body = person_boxes(kps, (480, 640), (112, 112))[0]
    top = person_boxes(kps, (480, 640), (112, 112), box_joints=upper)[0]
    assert top[3] < body[3] / 2                                 # the legs no longer shape the box
    assert top[1] <= 50 and top[1] + top[3] >= 150              # and it still holds every upper-body joint
    with pytest.raises(InvalidInputError, match="unknown crop region 'legs'"):
        crop_joints("legs", "penn13")


@pytest.mark.parametrize("region", ["body", "upper_body"])
def test_training_windows_and_the_ring_buffer_give_the_same_tensors(tmp_path, region):
    """Same frames + keypoints in -> the same model input out, in training and live."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    folder.mkdir()
    num_frames, fps = 40, 30.0
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(num_frames)]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i + 1:06d}.png"), image)
    centre = np.array([150.0, 140.0]) + np.arange(num_frames)[:, None] * np.array([2.0, 0.5])  # walks right
    kps = np.ones((num_frames, 13, 3), np.float32)
    kps[..., :2] = centre[:, None] + rng.uniform(-30, 30, (num_frames, 13, 2))
    kps[:, 3, 2] = 0.0  # one invisible joint
    sampling = TemporalSampling(8, 0.8)  # a frame every 0.1 s = every 3rd source frame
    seq = Sequence("clip", "wave", kps, "penn13", fps, 320.0, 240.0, frames=folder)
    dataset = WindowDataset([seq], ["wave"], "penn13", sampling, None, modality="rgb+pose", image_size=48,
                            crop_region=region)
    item = dataset[0]
    indices = dataset.windows[0][1]

    ring = RingBuffer(sampling, hop=1, needs_frames=True, input_size=(48, 48),
                      box_joints=crop_joints(region, "penn13"))
    windows = [ring.push(Frame(i, i / fps, cv2.imread(str(folder / f"{i + 1:06d}.png")), 0.0), kps[i], True)
               for i in range(indices[-1] + 1)]
    live = windows[-1]
    np.testing.assert_array_equal(live.frame_indices, indices)
    np.testing.assert_array_equal(live.frames, item["frames"].numpy())
    np.testing.assert_array_equal(live.keypoints, item["keypoints"].numpy())
    # and it is the person crop, not the whole frame resized
    whole, _ = person_crop(np.stack([images[i] for i in indices]), np.zeros((8, 13, 3), np.float32), (48, 48))
    assert not np.allclose(live.frames, whole)
