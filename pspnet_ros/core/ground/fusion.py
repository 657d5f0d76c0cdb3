"""Grid evidence (per-cell class counts and obstacle points) and its fusion over cameras."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .grid import GroundError


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
