"""Joint layouts and conversions between them: the one place that knows skeletons.

A layout is an ordered list of joint names plus the bones used for drawing. Joint names come
from one shared vocabulary (``left_shoulder``, ``mid_hip`` ...), so converting between layouts is
a matter of looking names up. Joints that a source layout lacks are *derived* from the joints it
has where that is anatomically sound (``neck`` = mean of the shoulders), and otherwise marked
invisible (confidence 0) rather than invented.

Keypoint arrays everywhere in the project are ``(..., J, 3)``: x, y in pixels and a confidence
in [0, 1] (Penn Action visibility 0/1, MediaPipe visibility, detector scores). 3-D skeletons
(Kinect datasets) are ``(..., J, 4)``: x, y, z in metres and the confidence; conversions treat
every channel but the last as a coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np

from star_har.errors import InvalidInputError, UnknownNameError


@dataclass(frozen=True)
class JointLayout:
    """An ordered set of named joints with the bones that connect them (for drawing)."""

    name: str
    joint_names: tuple[str, ...]
    bone_names: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, joint_name: str) -> int:
        return self.joint_names.index(joint_name)

    @cached_property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """Bones as index pairs into ``joint_names``."""
        return tuple((self.index(a), self.index(b)) for a, b in self.bone_names)

    @cached_property
    def flip_permutation(self) -> np.ndarray:
        """Index permutation that swaps every ``left_*`` joint with its ``right_*`` twin.

        Mirroring an image horizontally turns a person's left arm into what looks like a right
        arm, so a horizontal flip must also permute the joints: ``kp_flipped = kp[..., perm, :]``.
        """
        perm = np.arange(self.num_joints)
        for i, joint in enumerate(self.joint_names):
            for side, other in (("left_", "right_"), ("right_", "left_")):
                if joint.startswith(side):
                    perm[i] = self.index(other + joint[len(side):])
        return perm


def _chain(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple(zip(names[:-1], names[1:]))


def _limbs(*, hands: tuple[str, ...] = (), feet: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """Arms and legs on both sides, optionally extended to hand / foot joints."""
    bones: list[tuple[str, str]] = []
    for side in ("left_", "right_"):
        bones += _chain(*(side + n for n in ("shoulder", "elbow", "wrist")))
        bones += _chain(*(side + n for n in ("hip", "knee", "ankle")))
        bones += [(side + "wrist", side + h) for h in hands]
        bones += [(side + "ankle", side + f) for f in feet]
    return tuple(bones)


_TORSO = (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
          ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"))

MEDIAPIPE_33 = JointLayout(
    "mediapipe33",
    ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
     "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
     "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
     "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
     "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
     "right_heel", "left_foot_index", "right_foot_index"),
    _TORSO + _limbs(hands=("pinky", "index", "thumb"), feet=("heel", "foot_index"))
    + _chain("right_ear", "right_eye_outer", "right_eye", "right_eye_inner", "nose",
             "left_eye_inner", "left_eye", "left_eye_outer", "left_ear")
    + (("mouth_left", "mouth_right"), ("left_heel", "left_foot_index"),
       ("right_heel", "right_foot_index"), ("left_pinky", "left_index"),
       ("right_pinky", "right_index")),
)

COCO_17 = JointLayout(
    "coco17",
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
     "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
     "left_knee", "right_knee", "left_ankle", "right_ankle"),
    _TORSO + _limbs() + _chain("left_ear", "left_eye", "nose", "right_eye", "right_ear"),
)

PENN_13 = JointLayout(
    "penn13",
    ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
     "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
     "right_ankle"),
    _TORSO + _limbs() + (("head", "left_shoulder"), ("head", "right_shoulder")),
)

# Penn's 13 joints plus the nose and both hands, for actions told apart at the face and in the
# hands (answering a phone, drinking, wiping glasses, scratching the head): MediaPipe gives all
# three, Kinect gives the hands (the nose is derived from its head).
BODY_16 = JointLayout(
    "body16",
    PENN_13.joint_names + ("nose", "left_hand", "right_hand"),
    PENN_13.bone_names + (("head", "nose"), ("left_wrist", "left_hand"), ("right_wrist", "right_hand")),
)

NTU_25 = JointLayout(
    "ntu25",
    ("spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
     "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip",
     "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle",
     "right_foot", "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip",
     "right_thumb"),
    _chain("spine_base", "spine_mid", "spine_shoulder", "neck", "head")
    + (("spine_shoulder", "left_shoulder"), ("spine_shoulder", "right_shoulder"),
       ("spine_base", "left_hip"), ("spine_base", "right_hip"))
    + _limbs(hands=("hand",), feet=("foot",))
    + (("left_hand", "left_hand_tip"), ("left_hand", "left_thumb"),
       ("right_hand", "right_hand_tip"), ("right_hand", "right_thumb")),
)

OPENPOSE_25 = JointLayout(
    "openpose25",
    ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
     "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip",
     "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
     "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
     "right_heel"),
    (("nose", "neck"), ("neck", "mid_hip"), ("neck", "left_shoulder"),
     ("neck", "right_shoulder"), ("mid_hip", "left_hip"), ("mid_hip", "right_hip"))
    + _limbs(feet=("big_toe", "small_toe", "heel"))
    + _chain("left_ear", "left_eye", "nose", "right_eye", "right_ear"),
)

# Kinect v1's 20 joints (UTD-MHAD, MSR Action3D), in the vocabulary's names: the Kinect's
# "shoulder center", "spine" and "hip center" are NTU's spine_shoulder, spine_mid and spine_base.
_KINECT_20_BONES = (_chain("head", "spine_shoulder", "spine_mid", "spine_base")
                    + (("spine_shoulder", "left_shoulder"), ("spine_shoulder", "right_shoulder"),
                       ("spine_base", "left_hip"), ("spine_base", "right_hip"))
                    + _limbs(hands=("hand",), feet=("foot",)))

UTD_20 = JointLayout(
    "utd20",
    ("head", "spine_shoulder", "spine_mid", "spine_base", "left_shoulder", "left_elbow",
     "left_wrist", "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
     "left_hip", "left_knee", "left_ankle", "left_foot", "right_hip", "right_knee",
     "right_ankle", "right_foot"),
    _KINECT_20_BONES,
)

MSR_20 = JointLayout(
    "msr20",
    ("left_shoulder", "right_shoulder", "spine_shoulder", "spine_mid", "left_hip", "right_hip",
     "spine_base", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
     "right_hand", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot",
     "right_foot", "head"),
    _KINECT_20_BONES,
)

LAYOUTS: dict[str, JointLayout] = {
    layout.name: layout
    for layout in (MEDIAPIPE_33, COCO_17, PENN_13, BODY_16, NTU_25, OPENPOSE_25, UTD_20, MSR_20)
}

# How to derive a joint that a layout lacks: alternatives tried in order, each a set of joints
# averaged together (confidence = the least confident of them). Entries may name derived joints.
_DERIVATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    # The ears straddle the centre of the head, closer to Penn/NTU "head" than the nose is.
    "head": (("left_ear", "right_ear"), ("nose",)),
    "nose": (("head",),),
    "neck": (("spine_shoulder",), ("left_shoulder", "right_shoulder")),
    "spine_shoulder": (("neck",),),
    "mid_hip": (("spine_base",), ("left_hip", "right_hip")),
    "spine_base": (("mid_hip",),),
    "spine_mid": (("spine_shoulder", "spine_base"),),
}
for _side in ("left_", "right_"):
    _DERIVATIONS.update({
        _side + "hand": ((_side + "index", _side + "pinky"),),
        _side + "hand_tip": ((_side + "index",),),
        _side + "index": ((_side + "hand_tip",),),
        _side + "foot": ((_side + "foot_index",), (_side + "big_toe",)),
        _side + "foot_index": ((_side + "foot",), (_side + "big_toe",)),
        _side + "big_toe": ((_side + "foot_index",), (_side + "foot",)),
    })


def get_layout(layout: str | JointLayout) -> JointLayout:
    """Look a layout up by name; raises ``KeyError`` naming the known layouts."""
    if isinstance(layout, JointLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise UnknownNameError(f"unknown joint layout {layout!r}; known: {', '.join(LAYOUTS)}") from None


def _source_recipe(joint: str, src: JointLayout, seen: frozenset[str] = frozenset()) -> list[int] | None:
    """Source joint indices to average for ``joint``, or None when it cannot be derived."""
    if joint in src.joint_names:
        return [src.index(joint)]
    for alternative in _DERIVATIONS.get(joint, ()):
        parts = [_source_recipe(j, src, seen | {joint}) for j in alternative if j not in seen]
        if len(parts) == len(alternative) and all(p is not None for p in parts):
            return [i for p in parts for i in p]
    return None


def conversion_recipe(src: str | JointLayout, dst: str | JointLayout) -> tuple[tuple[int, ...] | None, ...]:
    """For each joint of ``dst``: the ``src`` indices averaged to make it, or None if missing."""
    return _cached_recipe(get_layout(src), get_layout(dst))


@cache
def _cached_recipe(src: JointLayout, dst: JointLayout) -> tuple[tuple[int, ...] | None, ...]:
    # Computed once per layout pair: the pose stage converts every frame it sees.
    recipes = (_source_recipe(joint, src) for joint in dst.joint_names)
    return tuple(None if parts is None else tuple(parts) for parts in recipes)


def joint_stand_ins(src: str | JointLayout, dst: str | JointLayout) -> tuple[int | None, ...]:
    """For each joint of ``dst``: the ``src`` joint that best stands in for it (to carry per-joint
    weights over when a model moves to another layout): the same joint, else the first part of
    its derivation, else a ``src`` joint it shares a bone with in ``dst`` (a hand -> its wrist);
    None when there is none."""
    src, dst = get_layout(src), get_layout(dst)
    stand_ins: list[int | None] = []
    for joint in dst.joint_names:
        recipe = _source_recipe(joint, src)
        neighbours = [b if a == joint else a for a, b in dst.bone_names if joint in (a, b)]
        known = [src.index(n) for n in neighbours if n in src.joint_names]
        stand_ins.append(recipe[0] if recipe else known[0] if known else None)
    return tuple(stand_ins)


def convert_keypoints(keypoints: np.ndarray, src: str | JointLayout, dst: str | JointLayout) -> np.ndarray:
    """Convert ``(..., J_src, C)`` keypoints to ``(..., J_dst, C)`` (C = 3 for 2-D, 4 for 3-D).

    Joints of ``dst`` that ``src`` has are copied, derivable ones are averaged from their parts
    (confidence = minimum over the parts) and the rest get zeros (invisible).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    src_layout, dst_layout = get_layout(src), get_layout(dst)
    if keypoints.ndim < 2 or keypoints.shape[-2] != src_layout.num_joints or keypoints.shape[-1] not in (3, 4):
        raise InvalidInputError(f"expected keypoints (..., {src_layout.num_joints}, 3 or 4) for layout "
                         f"{src_layout.name!r}, got shape {keypoints.shape}")
    out = np.zeros(keypoints.shape[:-2] + (dst_layout.num_joints, keypoints.shape[-1]), dtype=np.float32)
    for j, parts in enumerate(conversion_recipe(src_layout, dst_layout)):
        if parts is None:
            continue
        picked = keypoints[..., list(parts), :]
        out[..., j, :-1] = picked[..., :-1].mean(axis=-2)
        out[..., j, -1] = picked[..., -1].min(axis=-1)
    return out


#: Index of the optional depth channel of pixel keypoints ``(..., J, 4)``: x, y, confidence,
#: depth. Depth is in pixels at the person's scale (the unit of x and y there), larger = farther
#: from the camera, with any offset (models only use depth differences). It comes last so every
#: reader of x, y and confidence (channels 0-2) works on keypoints with or without it.
DEPTH_CHANNEL = 3


def convert_pose(keypoints: np.ndarray, src: str | JointLayout, dst: str | JointLayout) -> np.ndarray:
    """:func:`convert_keypoints` for pixel keypoints ``(..., J_src, 3)`` or, with the depth channel,
    ``(..., J_src, 4)``: a derived joint's depth is the mean of its parts' depths. (A separate entry
    point because :func:`convert_keypoints` reads a four-channel array as 3-D points, x, y, z and
    the confidence last.)"""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape[-1] != DEPTH_CHANNEL + 1:
        return convert_keypoints(keypoints, src, dst)
    # Put depth where convert_keypoints averages (before the confidence) and back.
    moved = convert_keypoints(keypoints[..., [0, 1, DEPTH_CHANNEL, 2]], src, dst)
    return moved[..., [0, 1, 3, 2]]


def flip_keypoints(keypoints: np.ndarray, layout: str | JointLayout, width: float) -> np.ndarray:
    """Mirror ``(..., J, 3 or 4)`` pixel keypoints horizontally in an image ``width`` pixels wide.

    x becomes ``width - x`` and left/right joints swap (depth is unchanged), so the result is what a pose estimator
    would report on the mirrored image. Invisible joints stay invisible.
    """
    layout = get_layout(layout)
    flipped = np.asarray(keypoints, dtype=np.float32)[..., layout.flip_permutation, :].copy()
    flipped[..., 0] = width - flipped[..., 0]
    return flipped
