"""Virtual cameras: 3-D skeletons seen from viewpoints the recording camera never had.

Kinect datasets film everybody from one frontal camera at chest height; a webcam on a laptop, a
shelf or a ceiling sees people from the side and from above. Each training window of a 3-D
skeleton is rendered from a random :class:`VirtualCamera` around the person instead.

The model is the pinhole camera. Skeleton points are in the recording camera's space (metres; x
right, y up, z away from the camera). The virtual camera looks at a pivot (the person's centre in
the window) from ``distance`` metres; ``yaw`` turns it around the person about the vertical axis
(0 = where the recording camera stands, 90 = at the person's side) and ``pitch`` raises it
(0 = level, 90 = straight above). A point ``p`` goes to the camera's space as
``q = Rx(pitch) Ry(yaw) (p - pivot) + (0, 0, distance)`` and lands on the image at

    u = cx + focal * q_x / q_z,      v = cy - focal * q_y / q_z

(``v`` grows downwards, as image rows do; ``cx, cy`` is the image centre). Points behind the
camera (``q_z`` <= 0.1 m) are marked invisible. Each point also gets its depth in pixels at the
person's scale, ``focal * (q_z - d) / d`` with ``d`` the median depth of the visible points
(a metre there spans ``focal / d`` pixels of u and v), which is the keypoints' depth channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from star_har.model.skeleton import DEPTH_CHANNEL

MIN_DEPTH = 0.1  # metres: nearer points (or behind the camera) cannot be projected sensibly


@dataclass(frozen=True)
class VirtualCamera:
    """A pinhole camera looking at the person (angles in degrees, distance in metres, focal
    length and image size in pixels)."""

    yaw: float = 0.0
    pitch: float = 0.0
    distance: float = 3.0
    focal: float = 500.0
    width: float = 640.0
    height: float = 480.0

    def rotation(self) -> np.ndarray:
        """``Rx(pitch) @ Ry(yaw)``: the world seen from the camera's orientation."""
        yaw, pitch = np.radians(self.yaw), np.radians(self.pitch)
        # Turning the camera by +yaw around the person turns the person by -yaw in its view.
        ry = np.array([[np.cos(yaw), 0.0, -np.sin(yaw)], [0.0, 1.0, 0.0], [np.sin(yaw), 0.0, np.cos(yaw)]])
        # Raising the camera brings points above the pivot nearer to it (smaller depth).
        rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), np.sin(pitch)], [0.0, -np.sin(pitch), np.cos(pitch)]])
        return rx @ ry

    def project(self, points: np.ndarray, pivot: np.ndarray) -> np.ndarray:
        """``(..., J, 4)`` x, y, z, confidence -> ``(..., J, 4)`` pixel keypoints u, v, confidence and
        depth (:data:`~star_har.model.skeleton.DEPTH_CHANNEL`)."""
        points = np.asarray(points, dtype=np.float64)
        q = (points[..., :3] - pivot) @ self.rotation().T
        q[..., 2] += self.distance
        depth = np.maximum(q[..., 2], MIN_DEPTH)
        in_front = (q[..., 2] > MIN_DEPTH) & (points[..., 3] > 0)
        person_depth = float(np.median(depth[in_front])) if in_front.any() else self.distance or 1.0
        out = np.empty(points.shape[:-1] + (4,), dtype=np.float32)
        out[..., 0] = self.width / 2 + self.focal * q[..., 0] / depth
        out[..., 1] = self.height / 2 - self.focal * q[..., 1] / depth
        out[..., 2] = np.where(q[..., 2] > MIN_DEPTH, points[..., 3], 0.0)
        out[..., DEPTH_CHANNEL] = self.focal * (depth - person_depth) / person_depth
        return out


def recorded_view(points: np.ndarray, focal: float = 500.0, width: float = 640.0,
                  height: float = 480.0) -> np.ndarray:
    """``(..., J, 4)`` camera-space points as the recording camera saw them (pixels, confidence, depth):
    the virtual camera at the recording camera's own place (pivot at the origin, distance 0)."""
    return VirtualCamera(0.0, 0.0, 0.0, focal, width, height).project(points, np.zeros(3))


@dataclass(frozen=True)
class CameraRanges:
    """Where random training cameras stand: uniform in each range. The defaults cover a webcam
    anywhere from in front to the side (either side, by the sign of yaw), from slightly below to
    a ceiling corner, 1.5 to 5 m away, with 50-75 degree horizontal fields of view at 640 px."""

    yaw: tuple[float, float] = (-80.0, 80.0)
    pitch: tuple[float, float] = (-10.0, 50.0)
    distance: tuple[float, float] = (1.5, 5.0)
    focal: tuple[float, float] = (420.0, 690.0)

    def sample(self, rng: np.random.Generator) -> VirtualCamera:
        return VirtualCamera(*(float(rng.uniform(*r)) for r in (self.yaw, self.pitch, self.distance, self.focal)))


def render_window(points: np.ndarray, camera: VirtualCamera) -> np.ndarray:
    """A window ``(F, J, 4)`` of 3-D points as ``camera`` sees it, looking at the centre of the
    visible joints over the window (so the person stays in view whatever the angle)."""
    visible = points[..., 3] > 0
    pivot = points[..., :3][visible].mean(axis=0) if visible.any() else np.zeros(3)
    return camera.project(points, pivot)
