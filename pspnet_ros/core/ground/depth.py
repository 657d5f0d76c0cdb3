"""Depth images for the ground grid: the supported encodings, their checks and stamp pairing."""
from __future__ import annotations

from collections import deque

import numpy as np

from .grid import GroundError

DEPTH_ENCODINGS = {'16UC1': np.uint16, 'mono16': np.uint16, '32FC1': np.float32}


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
