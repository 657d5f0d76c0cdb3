"""Ground-plane semantic grid: class labels of a camera projected into cells around the robot.

Frames follow REP-103/REP-105: the base frame has x forward, y left and z up, and the ground
is the plane ``z = ground_z`` in it; a camera's optical frame has z forward, x right and y
down (the frame an image header names). Pose parameters describe the camera body frame
(x forward, like a URDF ``camera_link``); ``CameraPose.from_rpy`` turns that into the optical
frame.

Without depth, ground classes (road, pavement...) land where their pixel rays meet the ground,
and obstacle classes mark only their footprint: the lowest pixel of each vertical run of
obstacle pixels in each image column whose pixel below is ground, projected at the boundary
between the two pixels, where the obstacle stands. The rest of an obstacle is never spread
along its rays, and the ground it hides stays unknown. Cells above the horizon, beyond
``max_range`` or outside the view are unknown. Far away, where one pixel row spans several
cells, a cell that no pixel centre lands in takes the class of the pixel that sees its centre
(if that is a ground class). The per-pixel cell lookup and that far-cell table are built once
per intrinsics/pose change (``GroundProjector.set_camera``), so a frame costs a few table
lookups and one ``np.bincount``.

With an aligned depth image every labelled pixel goes to its 3D point: ground classes where
they are, obstacle pixels where they stand if their height above the ground lies in
``height_band``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import math
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from .labels import LabelSet

UNKNOWN = -1

# Which classes of each shipped label set are ground (drivable or walkable surfaces, projected
# where they are seen) and which are obstacles (only their footprint is marked). Classes in
# neither (sky, and surfaces above the ground such as ceilings) give no evidence and hide the
# ground behind them.
CLASS_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    'camvid': {
        'ground': ('road', 'pavement'),
        'obstacle': ('building', 'pole', 'tree', 'sign_symbol', 'fence', 'car', 'pedestrian',
                     'bicyclist'),
    },
    'cityscapes': {
        'ground': ('road', 'sidewalk', 'terrain'),
        'obstacle': ('building', 'wall', 'fence', 'pole', 'traffic_light', 'traffic_sign',
                     'vegetation', 'person', 'rider', 'car', 'truck', 'bus', 'train',
                     'motorcycle', 'bicycle'),
    },
    'ade20k': {
        'ground': ('floor', 'road', 'grass', 'sidewalk', 'earth', 'field', 'sand', 'path',
                   'runway', 'dirt_track', 'land', 'rug'),
        'obstacle': ('wall', 'building', 'tree', 'person', 'car', 'fence', 'column', 'chair',
                     'table', 'sofa', 'desk', 'cabinet', 'pole', 'bicycle', 'truck', 'bus',
                     'van', 'minibike', 'box', 'plant', 'streetlight', 'signboard', 'bench',
                     'ashcan', 'animal', 'barrel', 'rock'),
    },
    'voc': {
        'ground': (),
        'obstacle': ('bicycle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
                     'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train'),
    },
}

# The grids published by default for each label set: group -> classes.
DEFAULT_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    'camvid': {'drivable': ('road',),
               'obstacle': ('car', 'pedestrian', 'bicyclist', 'pole', 'fence', 'sign_symbol')},
    'cityscapes': {'drivable': ('road',),
                   'obstacle': ('car', 'truck', 'bus', 'train', 'person', 'rider', 'bicycle',
                                'motorcycle', 'pole', 'fence', 'traffic_sign',
                                'traffic_light')},
}

DEPTH_ENCODINGS = {'16UC1': np.uint16, 'mono16': np.uint16, '32FC1': np.float32}


class GroundError(ValueError):
    """Input the ground projection cannot use (no intrinsics, a camera that sees no ground, a
    depth image that does not fit); the message says what and what to do."""


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


@dataclass(frozen=True)
class GridSpec:
    """A grid in the base frame: ``width`` x ``height`` cells of ``resolution`` metres, cell
    (0, 0)'s corner at (``origin_x``, ``origin_y``); cell index = row * width + column, the
    row along y and the column along x (nav_msgs/OccupancyGrid's layout)."""

    resolution: float = 0.1
    width: int = 200
    height: int = 200
    origin_x: float = -10.0
    origin_y: float = -10.0

    def __post_init__(self):
        if not self.resolution > 0:
            raise GroundError(f'grid resolution must be > 0 metres, got {self.resolution}')
        if self.width < 1 or self.height < 1:
            raise GroundError(f'grid size must be at least 1x1 cells, got '
                              f'{self.width}x{self.height}')

    @classmethod
    def from_extent(cls, size_x: float, size_y: float, resolution: float,
                    origin_x: float | None = None,
                    origin_y: float | None = None) -> 'GridSpec':
        """A grid of ``size_x`` x ``size_y`` metres; the origin defaults to centring it on the
        base frame's origin."""
        if not resolution > 0:
            raise GroundError(f'grid resolution must be > 0 metres, got {resolution}')
        w, h = int(round(size_x / resolution)), int(round(size_y / resolution))
        ox = -w * resolution / 2 if origin_x is None else float(origin_x)
        oy = -h * resolution / 2 if origin_y is None else float(origin_y)
        return cls(float(resolution), w, h, ox, oy)

    @property
    def cells(self) -> int:
        return self.width * self.height

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat cell index of base-frame points, -1 outside the grid."""
        col = np.floor((np.asarray(x) - self.origin_x) / self.resolution)
        row = np.floor((np.asarray(y) - self.origin_y) / self.resolution)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        return np.where(inside, row * self.width + col, -1).astype(np.int64)

    def centre(self, col: int, row: int) -> tuple[float, float]:
        """Base-frame (x, y) of a cell's centre."""
        return (self.origin_x + (col + 0.5) * self.resolution,
                self.origin_y + (row + 0.5) * self.resolution)


@dataclass(frozen=True)
class ClassRoles:
    """Class ids that project as ground and as obstacle footprints, and the published groups
    (name -> class ids)."""

    num_classes: int
    ground: tuple[int, ...]
    obstacle: tuple[int, ...]
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self):
        both = set(self.ground) & set(self.obstacle)
        if both:
            raise GroundError(f'class ids {sorted(both)} are both ground and obstacle')
        for name, ids in self.groups.items():
            loose = set(ids) - set(self.ground) - set(self.obstacle)
            if loose:
                raise GroundError(f'group {name!r}: class ids {sorted(loose)} are neither '
                                  'ground nor obstacle classes, so they never reach the grid')

    @classmethod
    def for_label_set(cls, labels: LabelSet, ground: Iterable[str] | None = None,
                      obstacle: Iterable[str] | None = None,
                      groups: Mapping[str, Iterable[str]] | None = None) -> 'ClassRoles':
        """Roles by class name; ``None`` takes the label set's defaults (``CLASS_ROLES``,
        ``DEFAULT_GROUPS``)."""
        roles = CLASS_ROLES.get(labels.name, {})
        if ground is None:
            ground = roles.get('ground', ())
        if obstacle is None:
            obstacle = roles.get('obstacle', ())
        if groups is None:
            groups = DEFAULT_GROUPS.get(labels.name, {})

        def ids(names: Iterable[str], what: str) -> tuple[int, ...]:
            out = []
            for n in names:
                if n not in labels.classes:
                    raise GroundError(f'{what}: class {n!r} is not in label set '
                                      f'{labels.name!r} (classes: {", ".join(labels.classes)})')
                out.append(labels.classes.index(n))
            return tuple(out)

        return cls(labels.num_classes, ids(ground, 'ground classes'),
                   ids(obstacle, 'obstacle classes'),
                   {g: ids(names, f'group {g!r}') for g, names in groups.items()})


@dataclass
class Evidence:
    """What one frame (or several fused) says about the grid: per-cell class counts
    (``cells x num_classes`` integers: ground pixels and obstacle footprints or depth points)
    and the obstacle points in the base frame (N x 3 float32)."""

    counts: np.ndarray
    points: np.ndarray

    @classmethod
    def empty(cls, cells: int, num_classes: int) -> 'Evidence':
        return cls(np.zeros((cells, num_classes), np.int64), np.zeros((0, 3), np.float32))


def fuse(evidence: Iterable[Evidence]) -> Evidence:
    """Evidence of several cameras or frames together: counts added, points concatenated."""
    items = list(evidence)
    if not items:
        raise GroundError('nothing to fuse')
    counts = items[0].counts.copy()
    for e in items[1:]:
        counts += e.counts
    return Evidence(counts, np.concatenate([e.points for e in items]))


def cell_classes(counts: np.ndarray, roles: ClassRoles) -> np.ndarray:
    """The class each cell shows (``cells`` int16, -1 unknown): the most frequent obstacle
    class if any obstacle evidence fell there, else the most frequent ground class."""
    out = np.full(counts.shape[0], UNKNOWN, np.int16)
    for ids in (roles.ground, roles.obstacle):     # obstacles last: they override ground
        best = np.zeros(counts.shape[0], counts.dtype)
        cls = np.full(counts.shape[0], UNKNOWN, np.int16)
        for i in ids:          # a column at a time: faster than argmax over a short axis
            col = counts[:, i]
            better = col > best
            cls[better] = i
            np.maximum(best, col, out=best)
        seen = best > 0
        out[seen] = cls[seen]
    return out


def group_grid(classes: np.ndarray, ids: Iterable[int], cost: int = 100,
               other_cost: int = 0) -> np.ndarray:
    """An occupancy grid (int8, -1 unknown) for one class group: ``cost`` where a cell shows a
    class of the group, ``other_cost`` where it shows another class."""
    for name, v in (('cost', cost), ('other_cost', other_cost)):
        if not 0 <= v <= 100:
            raise GroundError(f'{name} must be 0..100 (nav_msgs/OccupancyGrid), got {v}')
    member = np.isin(classes, np.asarray(list(ids), np.int16))
    grid = np.where(member, cost, other_cost).astype(np.int8)
    grid[classes == UNKNOWN] = UNKNOWN
    return grid


class GroundProjector:
    """Projects one camera's labels (and optionally depth) into grid evidence.

    Args:
        grid: the grid in the base frame.
        roles: ground and obstacle class ids.
        max_range: metres from the camera (horizontally) beyond which nothing is marked.
        ground_z: height of the ground plane in the base frame (0 for base_footprint).
        height_band: with depth, obstacle points count if their height above the ground lies
            in ``[low, high]`` metres.
    """

    def __init__(self, grid: GridSpec, roles: ClassRoles, max_range: float = 10.0,
                 ground_z: float = 0.0, height_band: tuple[float, float] = (0.05, 2.0)):
        if not max_range > 0:
            raise GroundError(f'max_range must be > 0 metres, got {max_range}')
        if height_band[0] > height_band[1]:
            raise GroundError(f'height_band {tuple(height_band)} is empty: low > high')
        self.grid, self.roles = grid, roles
        self.max_range, self.ground_z = float(max_range), float(ground_z)
        self.height_band = (float(height_band[0]), float(height_band[1]))
        c = roles.num_classes
        self._stride = c + 1                         # class slot c collects what is not counted
        # label -> itself if ground, else the discard slot (labels are uint8: 256 entries)
        if c > 255:
            raise GroundError(f'{c} classes: the ground grid takes uint8 class ids (at most '
                              '255 classes)')
        self._slot_lut = np.full(256, c, np.uint8)
        self._slot_lut[list(roles.ground)] = list(roles.ground)
        self._role_lut = np.zeros(256, np.uint8)
        self._role_lut[list(roles.ground)] = 1
        self._role_lut[list(roles.obstacle)] = 2
        self._is_ground = np.zeros(256, bool)
        self._is_ground[list(roles.ground)] = True
        self._is_obstacle = np.zeros(256, bool)
        self._is_obstacle[list(roles.obstacle)] = True
        self._camera: tuple[Intrinsics, CameraPose] | None = None

    # -- lookup (once per intrinsics/pose) --------------------------------------------------

    @property
    def camera(self) -> tuple[Intrinsics, CameraPose] | None:
        return self._camera

    def set_camera(self, intrinsics: Intrinsics, pose: CameraPose) -> bool:
        """Use these intrinsics and pose; rebuilds the lookup only if they changed (returns
        whether it did). Raises ``GroundError`` if no pixel of the camera sees the grid."""
        if self._camera == (intrinsics, pose):
            return False
        w, h = intrinsics.width, intrinsics.height
        rot, t = pose.matrix()
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        rays = self._rays(intrinsics, rot, u, v)             # (h*w, 3) base frame, z_opt = 1
        cells, _ = self._ground_hits(rays, t)
        if not (cells >= 0).any():
            down = int((rays[:, 2] < 0).sum())
            raise GroundError(
                f'no pixel of the camera sees the grid: {down} of {w * h} pixel rays point '
                f'below the horizon (camera at z={t[2]:.3f} m, ground at z={self.ground_z} m, '
                f'optical axis {tuple(np.round(rot[:, 2], 3))} in the base frame); check the '
                'camera pose (pitch > 0 looks down), max_range and the grid extent')
        # footprints meet the ground at the lower edge of the obstacle's pixel
        feet, foot_xyz = self._ground_hits(self._rays(intrinsics, rot, u, v + 0.5), t)
        self._lookup = np.where(cells >= 0, cells * self._stride, self.grid.cells * self._stride
                                ).astype(np.int32).reshape(h, w)
        self._foot = feet.astype(np.int32).reshape(h, w)
        self._foot[-1] = -1                  # the lowest row has no pixel below it
        self._foot_xyz = foot_xyz.astype(np.float32).reshape(h, w, 3)
        self._rays_base = np.ascontiguousarray(rays.T, dtype=np.float32)   # (3, h*w)
        self._origin = t.astype(np.float32)
        fill_cells, self._fill_pixels = self._far_cells(intrinsics, rot, t, cells)
        self._fill_keys = (fill_cells * self._stride).astype(np.int32)
        self._camera = (intrinsics, pose)
        return True

    def _far_cells(self, intr: Intrinsics, rot: np.ndarray, t: np.ndarray,
                   hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells in view that no pixel centre lands in (far away, where one pixel row spans
        several cells), and the flat index of the pixel that sees each one's centre."""
        g = self.grid
        missed = np.ones(g.cells, bool)
        missed[hit[hit >= 0]] = False
        idx = np.flatnonzero(missed)
        col, row = idx % g.width, idx // g.width
        x = g.origin_x + (col + 0.5) * g.resolution
        y = g.origin_y + (row + 0.5) * g.resolution
        base = np.stack([x, y, np.full_like(x, self.ground_z)], axis=1)
        opt = (base - t) @ rot                           # rows: R^T (p - t)
        ok = (opt[:, 2] > 1e-6) & (np.hypot(x - t[0], y - t[1]) <= self.max_range)
        idx, opt = idx[ok], opt[ok]
        if not idx.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        d = np.asarray(intr.d, dtype=np.float64) if any(intr.d) else None
        uv, _ = cv2.projectPoints(opt.reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                                  intr.matrix(), d)
        uv = np.floor(uv.reshape(-1, 2) + 0.5)
        inside = ((uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0)
                  & (uv[:, 1] < intr.height))
        pix = (uv[inside, 1] * intr.width + uv[inside, 0]).astype(np.int64)
        return idx[inside].astype(np.int64), pix

    @staticmethod
    def _rays(intr: Intrinsics, rot: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        pts = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
        d = np.asarray(intr.d, dtype=np.float64) if any(intr.d) else None
        norm = cv2.undistortPoints(pts, intr.matrix(), d).reshape(-1, 2)
        opt = np.concatenate([norm, np.ones((norm.shape[0], 1))], axis=1)
        return opt @ rot.T

    def _ground_hits(self, rays: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell index (-1: sky, behind, beyond range or off the grid) and ground point of each
        ray."""
        dz = rays[:, 2]
        down = dz < -1e-9
        s = np.where(down, (self.ground_z - t[2]) / np.where(down, dz, -1.0), -1.0)
        hit = down & (s > 0)
        xyz = t + s[:, None] * rays
        rng = np.hypot(xyz[:, 0] - t[0], xyz[:, 1] - t[1])
        hit &= rng <= self.max_range
        cells = np.where(hit, self.grid.cell_of(xyz[:, 0], xyz[:, 1]), -1)
        return cells, xyz

    # -- per frame -------------------------------------------------------------------------

    def _check_labels(self, labels: np.ndarray) -> None:
        if self._camera is None:
            raise GroundError('no camera intrinsics and pose yet (waiting for camera_info): '
                              'no grid until they arrive')
        intr = self._camera[0]
        if labels.shape != (intr.height, intr.width):
            raise GroundError(f'labels are {labels.shape[1]}x{labels.shape[0]} but camera_info '
                              f'says {intr.width}x{intr.height}; the mask must be at the '
                              'camera resolution')
        if labels.dtype != np.uint8:
            raise GroundError(f'labels must be uint8 class ids, got {labels.dtype}')

    def project(self, labels: np.ndarray) -> Evidence:
        """Evidence of one frame of class ids (uint8, camera resolution) on the ground plane."""
        self._check_labels(labels)
        c, cells = self.roles.num_classes, self.grid.cells
        # cv2.LUT: a SIMD table lookup, several times faster than numpy's take on uint8
        slot = cv2.LUT(labels, self._slot_lut)           # class id if ground, else c
        role = cv2.LUT(labels, self._role_lut)           # 0 other, 1 ground, 2 obstacle
        feet = (role[:-1] == 2) & (role[1:] == 1)
        rows, cols = np.nonzero(feet)
        fc = self._foot[rows, cols]
        ok = fc >= 0
        rows, cols, fc = rows[ok], cols[ok], fc[ok]
        # one bincount: every pixel (non-ground ones into a discard slot), the obstacle
        # footprints, and the far cells that no pixel centre lands in
        keys = np.concatenate([(self._lookup + slot).ravel(),
                               fc * self._stride + labels[rows, cols],
                               self._fill_keys + slot.ravel()[self._fill_pixels]])
        counts = np.bincount(keys, minlength=(cells + 1) * self._stride)
        counts = counts.reshape(cells + 1, self._stride)[:cells, :c]
        return Evidence(counts, self._foot_xyz[rows, cols])

    def project_depth(self, labels: np.ndarray, depth: np.ndarray, encoding: str) -> Evidence:
        """Evidence of one frame with its aligned depth image (``16UC1``/``mono16`` millimetres
        or ``32FC1`` metres, along the optical axis, 0/NaN = no depth; REP-118)."""
        self._check_labels(labels)
        check_depth(depth, encoding, labels.shape)
        c, cells, g = self.roles.num_classes, self.grid.cells, self.grid
        flat = labels.ravel()
        obstacle = self._is_obstacle[flat]
        sel = self._is_ground[flat] | obstacle
        dflat = depth.ravel()
        if depth.dtype == np.uint16:                 # millimetres, 0 = no depth
            sel &= dflat > 0
            idx = np.flatnonzero(sel)
            d = dflat[idx].astype(np.float32) * np.float32(0.001)
        else:                                        # metres, 0 / NaN / inf = no depth
            sel &= np.isfinite(dflat) & (dflat > 0)
            idx = np.flatnonzero(sel)
            d = dflat[idx]
        rays, (ox, oy, oz) = self._rays_base, self._origin
        dx, dy = d * rays[0, idx], d * rays[1, idx]
        z = oz + d * rays[2, idx] - np.float32(self.ground_z)
        is_obst = obstacle[idx]
        keep = dx * dx + dy * dy <= np.float32(self.max_range ** 2)
        keep &= ~is_obst | ((z >= self.height_band[0]) & (z <= self.height_band[1]))
        x, y = ox + dx, oy + dy
        col = np.floor((x - g.origin_x) / g.resolution)
        row = np.floor((y - g.origin_y) / g.resolution)
        keep &= (col >= 0) & (col < g.width) & (row >= 0) & (row < g.height)
        cell = (row[keep] * g.width + col[keep]).astype(np.int64)
        counts = np.bincount(cell * c + flat[idx[keep]], minlength=cells * c)
        obst = keep & is_obst
        points = np.stack([x[obst], y[obst], z[obst] + np.float32(self.ground_z)], axis=1)
        return Evidence(counts.reshape(cells, c), points.astype(np.float32))


def check_depth(depth: np.ndarray, encoding: str, shape: tuple[int, int]) -> None:
    """Raise ``GroundError`` unless ``depth`` is a supported depth image of the labels'
    ``(height, width)``."""
    if encoding not in DEPTH_ENCODINGS:
        raise GroundError(f'depth encoding {encoding!r} is not supported: use 16UC1 '
                          '(millimetres) or 32FC1 (metres), the RealSense/ZED depth images '
                          'aligned to the colour camera')
    if depth.ndim != 2 or depth.shape != tuple(shape):
        raise GroundError(f'depth image is {"x".join(map(str, depth.shape[::-1]))} but the '
                          f'labels are {shape[1]}x{shape[0]}: the depth image must be aligned '
                          'to the colour camera (e.g. RealSense align_depth, '
                          'aligned_depth_to_color/image_raw)')
    want = DEPTH_ENCODINGS[encoding]
    if depth.dtype != want:
        raise GroundError(f'depth encoding {encoding} needs {np.dtype(want).name} pixels, '
                          f'got {depth.dtype}')


class DepthPairer:
    """Pairs frames with depth images by header stamp (integer nanoseconds): the exact stamp
    when ``tolerance`` is 0, else the nearest within ``tolerance`` seconds. A frame without
    a match is counted in ``unmatched``, never paired with a guess."""

    def __init__(self, tolerance: float = 0.0, keep: int = 30):
        if tolerance < 0:
            raise GroundError(f'depth sync tolerance must be >= 0 seconds, got {tolerance}')
        self.tolerance_ns = int(round(tolerance * 1e9))
        self._depth: deque = deque(maxlen=keep)
        self.matched = 0
        self.unmatched = 0

    def add(self, stamp_ns: int, depth: np.ndarray, encoding: str) -> None:
        self._depth.append((int(stamp_ns), depth, encoding))

    def match(self, stamp_ns: int) -> tuple[np.ndarray, str] | None:
        """The depth image paired with a frame stamped ``stamp_ns``, or None (counted)."""
        best = None
        for s, depth, enc in self._depth:
            gap = abs(s - stamp_ns)
            if gap <= self.tolerance_ns and (best is None or gap < best[0]):
                best = (gap, depth, enc)
        if best is None:
            self.unmatched += 1
            return None
        self.matched += 1
        return best[1], best[2]


class GroundFusion:
    """The latest evidence of each camera; fused over the cameras whose latest evidence lies
    within ``sync_tolerance`` seconds of the stamp asked for."""

    def __init__(self, sync_tolerance: float = 0.1):
        if sync_tolerance < 0:
            raise GroundError(f'sync tolerance must be >= 0 seconds, got {sync_tolerance}')
        self.tolerance_ns = int(round(sync_tolerance * 1e9))
        self._latest: dict[str, tuple[int, Evidence]] = {}

    def update(self, camera: str, stamp_ns: int, evidence: Evidence) -> None:
        old = self._latest.get(camera)
        if old is None or stamp_ns >= old[0]:
            self._latest[camera] = (int(stamp_ns), evidence)

    def forget(self, camera: str) -> None:
        self._latest.pop(camera, None)

    def fused(self, stamp_ns: int) -> tuple[Evidence, list[str]] | None:
        """Evidence of the cameras in sync with ``stamp_ns``, and their names (None if none)."""
        items = [(name, ev) for name, (s, ev) in sorted(self._latest.items())
                 if abs(s - stamp_ns) <= self.tolerance_ns]
        if not items:
            return None
        return fuse(ev for _, ev in items), [name for name, _ in items]
