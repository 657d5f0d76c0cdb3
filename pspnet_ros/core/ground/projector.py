"""One camera's labels (and optionally depth) projected into grid evidence."""
from __future__ import annotations

import cv2
import numpy as np

from .camera import CameraPose, Intrinsics
from .depth import check_depth
from .fusion import Evidence
from .grid import ClassRoles, GridSpec, GroundError


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
