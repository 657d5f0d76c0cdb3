"""A camera for the ground grid: its pose in the base frame and its intrinsics."""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Sequence

import numpy as np

from .grid import GroundError


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """REP-103 fixed-axis roll, pitch, yaw (about x, then y, then z) as a 3x3 rotation."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Columns: the optical frame's x (right), y (down) and z (forward) axes in the body frame
# (x forward, y left, z up).
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class CameraPose:
    """The camera optical frame in the base frame: ``p_base = rotation @ p_optical +
    translation``."""

    rotation: tuple[tuple[float, ...], ...]
    translation: tuple[float, float, float]

    @classmethod
    def from_rpy(cls, x: float, y: float, z: float, roll: float, pitch: float, yaw: float,
                 optical: bool = False) -> 'CameraPose':
        """A pose from position (metres) and REP-103 angles (radians) of the camera body frame
        (x forward; pitch > 0 looks down), or of the optical frame itself if ``optical``."""
        rot = rotation_rpy(roll, pitch, yaw)
        if not optical:
            rot = rot @ BODY_FROM_OPTICAL
        return cls(_tuple2(rot), (float(x), float(y), float(z)))

    @classmethod
    def from_quaternion(cls, translation: Sequence[float],
                        quaternion: Sequence[float]) -> 'CameraPose':
        """A pose from a TF transform of the optical frame: translation and (x, y, z, w)."""
        qx, qy, qz, qw = (float(v) for v in quaternion)
        n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
        if not n > 0 or not math.isfinite(n):
            raise GroundError(f'camera pose quaternion {tuple(quaternion)} is not a rotation')
        qx, qy, qz, qw = qx / n, qy / n, qz / n, qw / n
        rot = np.array([
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
            [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
            [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)]])
        tx, ty, tz = (float(v) for v in translation)
        return cls(_tuple2(rot), (tx, ty, tz))

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` as float64 arrays."""
        return np.asarray(self.rotation, dtype=np.float64), np.asarray(self.translation)


def _tuple2(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in a)


@dataclass(frozen=True)
class Intrinsics:
    """Camera intrinsics as in sensor_msgs/CameraInfo: image size, ``k`` (3x3 row-major), the
    distortion coefficients ``d`` and their model (plumb_bob or rational_polynomial)."""

    width: int
    height: int
    k: tuple[float, ...]
    d: tuple[float, ...] = ()
    distortion_model: str = 'plumb_bob'

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise GroundError(f'camera_info size {self.width}x{self.height} is empty: the '
                              'camera driver must fill width and height')
        if len(self.k) != 9:
            raise GroundError(f'camera_info K has {len(self.k)} values, expected 9')
        if self.k[0] <= 0 or self.k[4] <= 0:
            raise GroundError(f'camera_info K has focal lengths fx={self.k[0]}, '
                              f'fy={self.k[4]}: the camera is not calibrated (calibrate it, '
                              'e.g. with camera_calibration, and publish its camera_info)')
        if any(self.d) and self.distortion_model not in ('plumb_bob', 'rational_polynomial'):
            raise GroundError(f'distortion model {self.distortion_model!r} is not supported '
                              '(plumb_bob or rational_polynomial); subscribe to the rectified '
                              'image and set ground_rectified: true instead')
        if any(self.d) and len(self.d) not in (4, 5, 8, 12, 14):
            raise GroundError(f'camera_info D has {len(self.d)} coefficients; '
                              f'{self.distortion_model} needs 5 (or 8)')

    def matrix(self) -> np.ndarray:
        return np.asarray(self.k, dtype=np.float64).reshape(3, 3)
