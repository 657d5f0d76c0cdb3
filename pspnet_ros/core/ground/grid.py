"""The grid in the base frame, the ground and obstacle classes, and the class each cell shows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..labels import LabelSet

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


class GroundError(ValueError):
    """Input the ground projection cannot use (no intrinsics, a camera that sees no ground, a
    depth image that does not fit); the message says what and what to do."""


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
