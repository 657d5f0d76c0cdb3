"""Occupancy as sensor_msgs/PointCloud2 fields (plain data): one point per region, typed fields.

Layout (version 1), little-endian, ``height`` 1, ``width`` = 1 + number of regions:

- point 0 is the whole frame, points 1.. are the configured regions in their configured order;
- fields, packed in this order: ``x0``, ``y0``, ``x1``, ``y1`` (FLOAT32, the region box as
  fractions of image width/height; the whole frame is 0, 0, 1, 1), ``pixels`` (UINT32, pixels
  in the region), then for every class ``<class name>`` (FLOAT32, fraction of the region's
  pixels), then for every class ``<class name>_count`` (UINT32, pixel count);
- ``point_step`` = 4 * (5 + 2 * classes), ``row_step`` = point_step * width, ``is_dense`` true.

The header is the input image's header. Readers such as sensor_msgs_py's ``read_points`` see
the class names as field names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

# sensor_msgs/PointField datatype constants.
UINT32 = 6
FLOAT32 = 7
BOX_FIELDS = ('x0', 'y0', 'x1', 'y1')
WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)


class Field(NamedTuple):
    """One sensor_msgs/PointField."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass
class OccupancyCloud:
    """The PointCloud2 fields that carry occupancy (the header comes from the input image)."""

    fields: list[Field]
    height: int
    width: int
    point_step: int
    row_step: int
    data: bytes
    is_bigendian: bool = False
    is_dense: bool = True


@dataclass
class RegionOccupancy:
    """Decoded occupancy of one point (region)."""

    box: tuple[float, float, float, float]
    pixels: int
    fractions: dict[str, float]
    counts: dict[str, int]


def occupancy_fields(class_names: Sequence[str]) -> list[Field]:
    """The field list for a label set (see the module docstring for the layout)."""
    names = list(BOX_FIELDS) + ['pixels'] + list(class_names) \
        + [f'{c}_count' for c in class_names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f'class names {dup} collide with occupancy field names; rename them')
    kinds = [FLOAT32] * 4 + [UINT32] + [FLOAT32] * len(class_names) \
        + [UINT32] * len(class_names)
    return [Field(n, 4 * i, k) for i, (n, k) in enumerate(zip(names, kinds))]


def _dtype(fields: Sequence[Field], point_step: int, big: bool) -> np.dtype:
    end = '>' if big else '<'
    kinds = {FLOAT32: 'f4', UINT32: 'u4'}
    for f in fields:
        if f.datatype not in kinds or f.count != 1:
            raise ValueError(f'occupancy field {f.name!r} has datatype {f.datatype} x '
                             f'{f.count}; expected FLOAT32 or UINT32 x 1')
    return np.dtype({'names': [f.name for f in fields],
                     'formats': [end + kinds[f.datatype] for f in fields],
                     'offsets': [f.offset for f in fields], 'itemsize': point_step})


def encode_occupancy(class_names: Sequence[str], counts: np.ndarray,
                     regions: Sequence[tuple[tuple[float, float, float, float], np.ndarray]]
                     = ()) -> OccupancyCloud:
    """Pack whole-frame ``counts`` and ``(box, counts)`` per region into PointCloud2 fields.

    Fractions are computed from the counts, so they always agree with them.
    """
    fields = occupancy_fields(class_names)
    point_step = 4 * len(fields)
    points = [(WHOLE_FRAME, np.asarray(counts))] + [(tuple(b), np.asarray(c)) for b, c in regions]
    arr = np.zeros(len(points), _dtype(fields, point_step, False))
    for i, (box, cnt) in enumerate(points):
        if cnt.shape != (len(class_names),):
            raise ValueError(f'counts for point {i} have shape {cnt.shape}, expected '
                             f'({len(class_names)},)')
        total = int(cnt.sum())
        for name, v in zip(BOX_FIELDS, box):
            arr[name][i] = v
        arr['pixels'][i] = total
        for c, name in enumerate(class_names):
            arr[name][i] = cnt[c] / total if total else 0.0
            arr[f'{name}_count'][i] = cnt[c]
    return OccupancyCloud(fields, 1, len(points), point_step, point_step * len(points),
                          arr.tobytes())


def encode_segmenter_occupancy(class_names: Sequence[str], occupancy,
                               regions: Mapping[str, tuple[float, float, float, float]]
                               | None = None) -> OccupancyCloud:
    """Encode a core ``Occupancy``; region boxes come from ``regions`` (name -> box)."""
    regions = regions or {}
    missing = [n for n in occupancy.regions if n not in regions]
    if missing:
        raise ValueError(f'no box given for occupancy regions {missing}')
    return encode_occupancy(class_names, occupancy.counts,
                            [(regions[n], c) for n, (c, _) in occupancy.regions.items()])


def decode_occupancy(fields: Sequence[Field], height: int, width: int, point_step: int,
                     data: bytes, is_bigendian: bool = False) -> list[RegionOccupancy]:
    """Read an occupancy PointCloud2 back; ``fields`` may be PointField-like objects."""
    fields = [Field(f.name, int(f.offset), int(f.datatype), int(f.count)) for f in fields]
    names = [f.name for f in fields]
    if names[:5] != [*BOX_FIELDS, 'pixels'] or (len(names) - 5) % 2:
        raise ValueError(f'not an occupancy cloud: fields start {names[:5]}, expected '
                         f'{[*BOX_FIELDS, "pixels"]} then class fractions and counts')
    classes = names[5:5 + (len(names) - 5) // 2]
    n = int(height) * int(width)
    if len(data) < n * point_step:
        raise ValueError(f'occupancy cloud data has {len(data)} bytes, needs {n * point_step}')
    arr = np.frombuffer(bytes(data[:n * point_step]), _dtype(fields, point_step, is_bigendian))
    return [RegionOccupancy(tuple(float(arr[b][i]) for b in BOX_FIELDS), int(arr['pixels'][i]),
                            {c: float(arr[c][i]) for c in classes},
                            {c: int(arr[f'{c}_count'][i]) for c in classes})
            for i in range(n)]
