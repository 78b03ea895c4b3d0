"""A procedural 3D body for the demo clip: a joint tree posed by joint angles (forward kinematics)
and animated by per-action keyframes.

Coordinates are metres, y up; at rest the body stands at the origin facing +z (towards a camera
on the +z axis), arms hanging, so the body's left side is +x. Angles are degrees:

* ``*_flex``: forward flexion (shoulder / hip raise the limb forwards, elbow bends the forearm
  forwards, knee bends the shin backwards, spine bends the chest forwards);
* ``*_abd``: abduction in the frontal plane (the limb moves sideways, away from the body);
* ``root_pitch`` tips the whole body backwards (90 = lying on the back, -90 = face down);
  ``root_yaw`` turns it about the vertical axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from star_har.errors import InvalidInputError

# Body joints in the order of their arrays; a parent always comes before its children.
JOINTS: tuple[str, ...] = (
    "pelvis", "chest", "neck", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_toe",
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINTS)}

# name -> (parent, offset from the parent in the parent's rest frame, metres)
_BONES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "chest": ("pelvis", (0.0, 0.22, 0.0)),
    "neck": ("chest", (0.0, 0.30, 0.0)),
    "head": ("neck", (0.0, 0.13, 0.01)),
}
for _side, _sign in (("left_", 1.0), ("right_", -1.0)):
    _BONES.update({
        _side + "shoulder": ("chest", (0.17 * _sign, 0.25, 0.0)),
        _side + "elbow": (_side + "shoulder", (0.0, -0.28, 0.0)),
        _side + "wrist": (_side + "elbow", (0.0, -0.25, 0.0)),
        _side + "hand": (_side + "wrist", (0.0, -0.08, 0.0)),
        _side + "hip": ("pelvis", (0.095 * _sign, -0.04, 0.0)),
        _side + "knee": (_side + "hip", (0.0, -0.43, 0.0)),
        _side + "ankle": (_side + "knee", (0.0, -0.42, 0.0)),
        _side + "toe": (_side + "ankle", (0.0, -0.05, 0.14)),
    })
PELVIS_HEIGHT = 0.95  # standing, feet on the floor

# Angles a pose may set; the ones it leaves out are 0 (standing at rest).
POSE_KEYS: tuple[str, ...] = (
    "root_pitch", "root_yaw", "spine_flex", "spine_twist", "neck_flex",
    *(f"{side}_{part}" for side in ("left", "right")
      for part in ("shoulder_flex", "shoulder_abd", "elbow_flex", "hip_flex", "hip_abd",
                   "knee_flex", "ankle_flex")),
)


def _rot_x(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _local_rotation(joint: str, pose: dict[str, float]) -> np.ndarray:
    """Rotation of the bone leaving ``joint``'s parent (i.e. the parent joint's articulation)."""
    side, _, part = joint.partition("_")
    sign = 1.0 if side == "left" else -1.0  # abduction mirrors between the sides
    get = lambda key: pose.get(f"{side}_{key}", 0.0)  # noqa: E731
    if part == "elbow":  # the upper arm: shoulder flexion then abduction
        return _rot_z(sign * get("shoulder_abd")) @ _rot_x(-get("shoulder_flex"))
    if part == "wrist":
        return _rot_x(-get("elbow_flex"))
    if part == "knee":
        return _rot_z(sign * get("hip_abd")) @ _rot_x(-get("hip_flex"))
    if part == "ankle":
        return _rot_x(get("knee_flex"))
    if part == "toe":
        return _rot_x(-get("ankle_flex"))
    if joint == "neck":
        return _rot_y(pose.get("spine_twist", 0.0)) @ _rot_x(pose.get("spine_flex", 0.0))
    if joint == "head":
        return _rot_x(pose.get("neck_flex", 0.0))
    return np.eye(3)


def forward_kinematics(pose: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (J, 3) and each joint's frame (J, 3, 3) for one pose, pelvis at the origin.

    A joint's frame is the orientation of the bone that ends at it; the head's frame tells which
    way the face points (its +z axis).
    """
    root = _rot_y(pose.get("root_yaw", 0.0)) @ _rot_x(-pose.get("root_pitch", 0.0))
    positions = np.zeros((len(JOINTS), 3))
    frames = np.zeros((len(JOINTS), 3, 3))
    frames[0] = root
    for i, joint in enumerate(JOINTS[1:], start=1):
        parent, offset = _BONES[joint]
        p = JOINT_INDEX[parent]
        # The articulation at the parent turns the bone; bones hanging from the pelvis or chest
        # (hips, shoulders) are rigid with it.
        rotation = frames[p] @ _local_rotation(joint, pose)
        positions[i] = positions[p] + rotation @ np.asarray(offset)
        frames[i] = rotation
    return positions, frames


@dataclass(frozen=True)
class Action:
    """An animated exercise: keyframe poses cycled with a period, and where the body rests.

    ``anchor``: ``"feet"`` puts the lowest foot on the floor, ``"lowest"`` the lowest joint
    (lying or on the hands), ``"hands"`` hangs the body from a bar at ``anchor_height``,
    ``"pelvis"`` fixes the pelvis at ``anchor_height`` (lying on a bench).
    ``props`` names things drawn with the body (``"bar"``, ``"bench"``, ``"barbell"``).
    """

    name: str
    keyframes: tuple[dict[str, float], ...]
    period: float
    anchor: str = "feet"
    anchor_height: float = 0.0
    camera_yaw: float = 0.0
    camera_elevation: float = 8.0
    props: tuple[str, ...] = ()

    def pose_at(self, t: float) -> dict[str, float]:
        """Pose at time ``t`` seconds: keyframes equally spaced over a period, eased between."""
        phase = (t / self.period) % 1.0 * len(self.keyframes)
        k = int(phase)
        a, b = self.keyframes[k], self.keyframes[(k + 1) % len(self.keyframes)]
        w = 0.5 - 0.5 * np.cos(np.pi * (phase - k))  # ease in and out: no jerks at keyframes
        return {key: (1 - w) * a.get(key, 0.0) + w * b.get(key, 0.0) for key in POSE_KEYS}

    def joints_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """World joint positions (J, 3) and frames (J, 3, 3) at time ``t``, placed by the anchor."""
        positions, frames = forward_kinematics(self.pose_at(t))
        if self.anchor == "feet":
            feet = [JOINT_INDEX[n] for n in ("left_ankle", "right_ankle", "left_toe", "right_toe")]
            shift = self.anchor_height + 0.07 - positions[feet, 1].min()
        elif self.anchor == "lowest":
            shift = self.anchor_height + 0.07 - positions[:, 1].min()
        elif self.anchor == "hands":
            hands = [JOINT_INDEX["left_hand"], JOINT_INDEX["right_hand"]]
            shift = self.anchor_height - positions[hands, 1].mean()
        elif self.anchor == "pelvis":
            shift = self.anchor_height
        else:
            raise InvalidInputError(f"unknown anchor {self.anchor!r}")
        positions[:, 1] += shift
        return positions, frames


def _sym(**angles: float) -> dict[str, float]:
    """A left-right symmetric pose: ``shoulder_flex=90`` sets both shoulders."""
    pose: dict[str, float] = {}
    for key, value in angles.items():
        if key in POSE_KEYS:
            pose[key] = value
        else:
            pose[f"left_{key}"] = pose[f"right_{key}"] = value
    return pose


# Exercises of Penn Action's classes, seen from where Penn Action's videos usually film them, at
# the pace of one repetition per Penn Action clip (its clips hold about one repetition each).
ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("jumping_jacks", (
        _sym(shoulder_abd=12, hip_abd=3, elbow_flex=10),
        _sym(shoulder_abd=175, hip_abd=16, elbow_flex=10),
    ), period=1.2),
    Action("squat", (
        _sym(shoulder_flex=-30, shoulder_abd=20, elbow_flex=150),
        _sym(spine_flex=35, neck_flex=-25, hip_flex=110, knee_flex=120, ankle_flex=30,
             shoulder_flex=-10, shoulder_abd=20, elbow_flex=150, hip_abd=8),
    ), period=3.0, camera_yaw=80),
    Action("pushup", (
        _sym(root_pitch=-75, shoulder_flex=75, ankle_flex=-50, neck_flex=-20),
        _sym(root_pitch=-88, shoulder_flex=-5, shoulder_abd=30, elbow_flex=95, ankle_flex=-50,
             neck_flex=-25),
    ), period=1.5, anchor="lowest", camera_yaw=70),
    Action("situp", (  # arms crossed on the chest
        _sym(root_pitch=88, hip_flex=50, knee_flex=100, ankle_flex=20, shoulder_flex=40, shoulder_abd=-20,
             elbow_flex=130, neck_flex=20),
        _sym(root_pitch=5, hip_flex=133, knee_flex=100, ankle_flex=20, shoulder_flex=40, shoulder_abd=-20,
             elbow_flex=130, neck_flex=10),
    ), period=2.5, anchor="lowest", camera_yaw=85, camera_elevation=15),
    Action("pullup", (
        _sym(shoulder_abd=165, elbow_flex=10, knee_flex=20, hip_flex=10),
        _sym(shoulder_abd=110, elbow_flex=140, knee_flex=30, hip_flex=15),
    ), period=2.3, anchor="hands", anchor_height=2.25, props=("bar",)),
    Action("bench_press", (  # elbows flared, feet on the floor, seen from above the head
        _sym(root_pitch=90, shoulder_flex=90, hip_flex=15, knee_flex=85, hip_abd=15),
        _sym(root_pitch=90, shoulder_flex=10, shoulder_abd=70, elbow_flex=100, hip_flex=15, knee_flex=85,
             hip_abd=15),
    ), period=2.4, anchor="pelvis", anchor_height=0.55, camera_yaw=120, camera_elevation=50,
           props=("bench", "barbell")),
)}
