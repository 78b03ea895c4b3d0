"""Renders the procedural body as a filled, shaded figure with OpenCV.

Body parts are tapered capsules (two circles and the tangent hull between them) drawn back to
front by depth; each gets three tones (dark rim, base, highlight towards the light) so limbs
look round. Everything is drawn at ``SUPERSAMPLE`` times the size and shrunk with area
averaging, which anti-aliases edges without per-primitive AA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from star_har.realtime.demo.body import JOINT_INDEX, Action

SUPERSAMPLE = 2

# BGR colours
SKIN = (120, 160, 215)
HAIR = (35, 45, 60)
SHIRT = (170, 95, 40)
SHORTS = (55, 55, 65)
SHOE = (235, 235, 235)
WALL_TOP, WALL_BOTTOM = (225, 232, 238), (200, 210, 220)
FLOOR_NEAR, FLOOR_FAR = (150, 160, 170), (175, 182, 190)
METAL = (120, 120, 125)
BENCH = (40, 40, 150)

# (from joint, to joint, radius at from, radius at to, colour), metres
_PARTS: tuple[tuple[str, str, float, float, tuple[int, int, int]], ...] = (
    ("pelvis", "chest", 0.145, 0.15, SHIRT),
    ("chest", "neck", 0.16, 0.13, SHIRT),
    ("neck", "head", 0.055, 0.05, SKIN),
    *((side + a, side + b, ra, rb, colour) for side in ("left_", "right_")
      for a, b, ra, rb, colour in (
          ("shoulder", "elbow", 0.05, 0.042, SKIN),
          ("elbow", "wrist", 0.04, 0.032, SKIN),
          ("wrist", "hand", 0.034, 0.036, SKIN),
          ("hip", "knee", 0.085, 0.06, SHORTS),
          ("knee", "ankle", 0.055, 0.04, SKIN),
          ("ankle", "toe", 0.045, 0.04, SHOE),
      )),
    ("left_shoulder", "right_shoulder", 0.075, 0.075, SHIRT),
    ("left_hip", "right_hip", 0.1, 0.1, SHORTS),
)
# Sleeves and shorts legs: a fraction of a bone, drawn over the skin.
_COVERS: tuple[tuple[str, str, float, float, tuple[int, int, int]], ...] = tuple(
    (side + a, side + b, frac, r, colour) for side in ("left_", "right_")
    for a, b, frac, r, colour in (("shoulder", "elbow", 0.45, 0.06, SHIRT),
                                  ("hip", "knee", 0.75, 0.09, SHORTS)))


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking at ``target`` from ``distance`` metres, turned ``yaw`` degrees
    about the vertical axis (0 = in front of the body) and raised by ``elevation`` degrees."""

    target: np.ndarray
    yaw: float
    distance: float
    focal: float
    size: tuple[int, int]  # (width, height) in pixels
    elevation: float = 8.0

    @property
    def position(self) -> np.ndarray:
        yaw, pitch = np.radians(self.yaw), np.radians(self.elevation)
        direction = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
        return self.target + self.distance * direction

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixels (N, 2) and depths (N,)."""
        forward = self.target - self.position
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        rel = np.atleast_2d(points) - self.position
        depth = rel @ forward
        width, height = self.size
        uv = np.stack([width / 2 + self.focal * (rel @ right) / depth,
                       height / 2 - self.focal * (rel @ up) / depth], axis=1)
        return uv, depth


def frame_camera(action: Action, size: tuple[int, int], fill: float = 0.72) -> Camera:
    """A camera that keeps the whole motion of ``action`` in view, filling ``fill`` of the frame."""
    samples = np.concatenate([action.joints_at(t)[0] for t in np.linspace(0, action.period, 12)])
    lo, hi = samples.min(0) - 0.15, samples.max(0) + 0.15
    target = (lo + hi) / 2
    yaw = np.radians(action.camera_yaw)
    # extent seen across the image: the box's width along the camera's right axis
    across = abs(np.cos(yaw)) * (hi[0] - lo[0]) + abs(np.sin(yaw)) * (hi[2] - lo[2])
    width, height = size
    distance = 4.5
    focal = min(fill * height / (hi[1] - lo[1]), fill * width / across) * distance
    return Camera(target, action.camera_yaw, distance, focal, size, action.camera_elevation)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, ...]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def _capsule(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
             colour: tuple[int, ...]) -> None:
    """Fill the convex hull of two circles (pixels)."""
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = np.concatenate([a + ra * ring, b + rb * ring])
    hull = cv2.convexHull(np.round(points * 4).astype(np.int32))
    cv2.fillConvexPoly(canvas, hull, colour, lineType=cv2.LINE_8, shift=2)


def _shaded_capsule(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
                    colour: tuple[int, int, int]) -> None:
    """A capsule with a dark rim and a highlight on the side facing the light (upper left)."""
    _capsule(canvas, a, b, ra, rb, _shade(colour, 0.62))
    _capsule(canvas, a, b, ra * 0.86, rb * 0.86, colour)
    light = np.array([-0.3, -0.35]) * (ra + rb) / 2
    _capsule(canvas, a + light, b + light, ra * 0.4, rb * 0.4, _shade(colour, 1.18))


def _background(size: tuple[int, int], camera: Camera) -> np.ndarray:
    """Wall with a vertical gradient above the floor line, floor gradient below."""
    width, height = size
    horizon = int(np.clip(camera.project(np.array([[camera.target[0], 0.0, camera.target[2] - 2.0]]))[0][0, 1],
                          0, height))
    canvas = np.empty((height, width, 3), np.uint8)
    for rows, top, bottom in (((0, horizon), WALL_TOP, WALL_BOTTOM), ((horizon, height), FLOOR_FAR, FLOOR_NEAR)):
        n = rows[1] - rows[0]
        if n > 0:
            ramp = np.linspace(0, 1, n)[:, None]
            canvas[rows[0]:rows[1]] = (np.asarray(top) * (1 - ramp) + np.asarray(bottom) * ramp)[:, None, :]
    return canvas


def _props(action: Action, joints: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float, float, tuple]]:
    """Props as world capsules: (end a, end b, radius a, radius b, colour), metres."""
    left, right = joints[JOINT_INDEX["left_hand"]], joints[JOINT_INDEX["right_hand"]]
    mid = (left + right) / 2
    axis = np.array([1.0, 0.0, 0.0])
    items = []
    if "bar" in action.props:
        bar_y = action.anchor_height
        items.append(([-0.7, bar_y, mid[2]], [0.7, bar_y, mid[2]], 0.02, 0.02, METAL))
    if "barbell" in action.props:
        items.append((mid - 0.75 * axis, mid + 0.75 * axis, 0.015, 0.015, METAL))
        for end in (-0.68, 0.68):
            items.append((mid + (end - 0.03) * axis, mid + (end + 0.03) * axis, 0.08, 0.08, (40, 40, 40)))
    if "bench" in action.props:
        top = action.anchor_height - 0.14
        items.append((np.array([0.0, top - 0.06, 0.45]), np.array([0.0, top - 0.06, -0.75]), 0.11, 0.11, BENCH))
        for z in (0.3, -0.6):
            items.append((np.array([0.0, 0.0, z]), np.array([0.0, top - 0.1, z]), 0.03, 0.03, METAL))
    return [(np.asarray(a, float), np.asarray(b, float), ra, rb, c) for a, b, ra, rb, c in items]


def render_frame(action: Action, t: float, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Render ``action`` at time ``t``: a BGR image (H, W, 3) uint8 and the body's joints
    projected to pixels (J, 2) in :data:`realtime.demo.body.JOINTS` order."""
    image, (uv,) = render_scene([(action, *action.joints_at(t))], camera)
    return image, uv


def render_scene(bodies: Sequence[tuple[Action, np.ndarray, np.ndarray]],
                 camera: Camera) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render several bodies in one scene, each ``(action, world joints (J, 3), joint frames
    (J, 3, 3))`` (the action only for its props); parts of all bodies are drawn back to front, so
    nearer people hide farther ones. Returns the BGR image and each body's joints in pixels (J, 2)."""
    big = Camera(camera.target, camera.yaw, camera.distance, camera.focal * SUPERSAMPLE,
                 (camera.size[0] * SUPERSAMPLE, camera.size[1] * SUPERSAMPLE), camera.elevation)
    canvas = _background(big.size, big)
    items: list[tuple[float, np.ndarray, np.ndarray, float, float, tuple]] = []
    projected = []
    for action, joints, frames in bodies:
        canvas = _shadow(canvas, joints, big)
        uv, depth = big.project(joints)
        projected.append(uv / SUPERSAMPLE)
        items += _body_items(action, joints, frames, uv, depth, big)
    for item in sorted(items, key=lambda item: -item[0]):
        if callable(item[1]):
            item[1](canvas)
        else:
            _shaded_capsule(canvas, *item[1:])
    return cv2.resize(canvas, camera.size, interpolation=cv2.INTER_AREA), projected


def _shadow(canvas: np.ndarray, joints: np.ndarray, camera: Camera) -> np.ndarray:
    """A soft shadow on the floor under the body."""
    floor = joints.copy()
    floor[:, 1] = 0.0
    shadow_uv, _ = camera.project(floor)
    lo, hi = shadow_uv.min(0), shadow_uv.max(0)
    overlay = canvas.copy()
    cv2.ellipse(overlay, (int((lo[0] + hi[0]) / 2), int((lo[1] + hi[1]) / 2)),
                (int((hi[0] - lo[0]) / 2 + 20 * SUPERSAMPLE), int((hi[1] - lo[1]) / 2 + 8 * SUPERSAMPLE)),
                0, 0, 360, (90, 95, 100), -1)
    return cv2.addWeighted(overlay, 0.35, canvas, 0.65, 0)


def _body_items(action: Action, joints: np.ndarray, frames: np.ndarray, uv: np.ndarray, depth: np.ndarray,
                big: Camera) -> list[tuple]:
    """One body's parts, covers, props and head as depth-keyed draw calls."""
    pixels_per_metre = big.focal / depth
    items: list[tuple] = []
    for a, b, ra, rb, colour in _PARTS:
        i, j = JOINT_INDEX[a], JOINT_INDEX[b]
        items.append(((depth[i] + depth[j]) / 2, uv[i], uv[j], ra * pixels_per_metre[i],
                      rb * pixels_per_metre[j], colour))
    for a, b, frac, r, colour in _COVERS:
        i, j = JOINT_INDEX[a], JOINT_INDEX[b]
        end = joints[i] + frac * (joints[j] - joints[i])
        end_uv, end_depth = big.project(end[None])
        # slightly nearer than the limb it covers, so it is drawn right after it
        items.append(((depth[i] + end_depth[0]) / 2 - 1e-3, uv[i], end_uv[0],
                      r * pixels_per_metre[i], r * big.focal / end_depth[0], colour))
    for a, b, ra, rb, colour in _props(action, joints):
        (pa, pb), (da, db) = big.project(np.stack([a, b]))
        items.append(((da + db) / 2, pa, pb, ra * big.focal / da, rb * big.focal / db, colour))
    return items + _head_items(joints[JOINT_INDEX["head"]], frames[JOINT_INDEX["head"]], big)


def _head_items(centre: np.ndarray, frame: np.ndarray, camera: Camera) -> list[tuple]:
    """The head as depth-sorted draw calls: skull (hair), face with eyes, nose, mouth and ears."""
    def at(local: tuple[float, float, float]) -> np.ndarray:
        return centre + frame @ np.asarray(local)

    (c_uv,), (c_depth,) = camera.project(centre[None])
    scale = camera.focal / c_depth
    to_camera = camera.position - centre
    facing = float(frame[:, 2] @ to_camera / np.linalg.norm(to_camera))  # 1: face towards camera

    def draw_head(canvas: np.ndarray) -> None:
        hair_uv = camera.project(at((0.0, 0.03, -0.025))[None])[0][0]
        face_uv = camera.project(at((0.0, -0.01, 0.02))[None])[0][0]
        r = 0.105 * scale
        # the hair sits behind the face when the face looks at the camera
        order = [(hair_uv, r * 1.02, HAIR), (face_uv, r * 0.97, SKIN)]
        if facing < -0.2:
            order.reverse()
        for ear in (0.098, -0.098):
            ear_uv, ear_depth = camera.project(at((ear, -0.005, 0.0))[None])
            if ear_depth[0] > c_depth - 0.02:  # ears behind the head's centre are drawn first
                _shaded_capsule(canvas, ear_uv[0], ear_uv[0], 0.025 * scale, 0.025 * scale, SKIN)
        for uv, radius, colour in order:
            _shaded_capsule(canvas, uv, uv, radius, radius, colour)
        for ear in (0.098, -0.098):
            ear_uv, ear_depth = camera.project(at((ear, -0.005, 0.0))[None])
            if ear_depth[0] <= c_depth - 0.02:
                _shaded_capsule(canvas, ear_uv[0], ear_uv[0], 0.025 * scale, 0.025 * scale, SKIN)
        if facing > 0.15:
            features = {
                "eye_l": ((0.036, 0.018, 0.093), 0.014, (40, 30, 30)),
                "eye_r": ((-0.036, 0.018, 0.093), 0.014, (40, 30, 30)),
                "brow_l": ((0.036, 0.042, 0.092), 0.008, HAIR),
                "brow_r": ((-0.036, 0.042, 0.092), 0.008, HAIR),
                "nose": ((0.0, -0.012, 0.11), 0.014, _shade(SKIN, 0.8)),
                "mouth": ((0.0, -0.05, 0.094), 0.011, (70, 70, 160)),
            }
            for local, radius, colour in features.values():
                (p,), (d,) = camera.project(at(local)[None])
                if d < c_depth:  # on the visible side of the head
                    cv2.circle(canvas, tuple(np.round(p).astype(int)), max(1, int(radius * scale)),
                               colour, -1, cv2.LINE_AA)

    return [(c_depth, draw_head)]
