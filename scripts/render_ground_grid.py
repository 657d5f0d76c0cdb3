#!/usr/bin/env python3
"""Render the ground-plane semantic grid of a demo frame to PNG: what ~/ground/* show.

Takes a CamVid val frame (the demo's data, ../shared) or, without it, the demo's synthetic
street frame; segments it with the shipped model (the node's ``Segmenter``), projects the
mask with ``core.ground`` for an assumed camera (CamVid publishes no calibration: 60 degrees
wide, 1.2 m up, level, the horizon near row 185 as in its frames) and draws, side by side:
the frame with its colour mask, then the top-down grid (cells coloured by the class they
show, unknown dark grey, 1 m lines, the camera at the bottom centre) with the obstacle
footprint points, then the drivable and obstacle group grids as a costmap sees them
(0 white, 100 black, -1 grey). Prints the cell counts.

    python scripts/render_ground_grid.py --out docs/images/ground_grid_demo.png
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import tempfile

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.ground import (CameraPose, cell_classes, ClassRoles,  # noqa: E402
                                    GridSpec, group_grid, GroundProjector, Intrinsics,
                                    UNKNOWN)

UNKNOWN_BGR = (60, 60, 60)
PX = 3                              # screen pixels per cell


def frame(shared: Path, name: str) -> tuple[np.ndarray, str]:
    """An RGB frame: CamVid val ``name`` if present, else the demo's synthetic street."""
    path = shared / 'data' / 'camvid' / 'val' / name
    if path.exists():
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), f'CamVid val {name}'
    sys.path.insert(0, str(ROOT / 'scripts'))
    from demo import synthetic_frames
    folder = Path(tempfile.mkdtemp())
    images, _ = synthetic_frames(folder, 1)
    first = sorted(images.glob('*.png'))[0]
    return cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB), 'synthetic demo frame'


def draw_grid(cells: np.ndarray, grid: GridSpec, colour_of) -> np.ndarray:
    """A BGR picture of a (height, width) cell array, x up the picture, y to the left."""
    img = colour_of(cells)                                    # (rows=y, cols=x, 3)
    img = np.ascontiguousarray(np.rot90(img, 1)[:, ::-1])    # x up, +y to the left
    img = cv2.resize(img, (img.shape[1] * PX, img.shape[0] * PX),
                     interpolation=cv2.INTER_NEAREST)
    step = int(round(1.0 / grid.resolution)) * PX             # 1 m lines
    img[::step, :] = img[::step, :] // 2 + 40
    img[:, ::step] = img[:, ::step] // 2 + 40
    return img


def to_screen(x: np.ndarray, y: np.ndarray, grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Picture (column, row) of base points in ``draw_grid``'s layout."""
    col = (grid.origin_y + grid.height * grid.resolution - y) / grid.resolution * PX
    row = (grid.origin_x + grid.width * grid.resolution - x) / grid.resolution * PX
    return col.astype(int), row.astype(int)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'))
    p.add_argument('--frame', default='0016E5_07959.png', help='CamVid val image name')
    p.add_argument('--focal', type=float, default=420.0, help='assumed fx = fy, pixels')
    p.add_argument('--height', type=float, default=1.2, help='camera height, metres')
    p.add_argument('--pitch', type=float, default=0.013, help='radians, > 0 looks down')
    p.add_argument('--out', default='docs/images/ground_grid_demo.png')
    args = p.parse_args(argv)

    from pspnet_ros.core import Segmenter
    from pspnet_ros.core.files import default_card_path
    rgb, what = frame(Path(args.shared), args.frame)
    seg = Segmenter(default_card_path())
    labels = seg(rgb, occupancy=False).labels.astype(np.uint8)
    h, w = labels.shape
    # a grid ahead of the camera: 16 m forward, 12 m across, at 0.1 m
    grid = GridSpec(resolution=0.1, width=160, height=120, origin_x=0.0, origin_y=-6.0)
    roles = ClassRoles.for_label_set(seg.labelset)
    proj = GroundProjector(grid, roles, max_range=16.0)
    proj.set_camera(Intrinsics(w, h, (args.focal, 0, (w - 1) / 2, 0, args.focal, (h - 1) / 2,
                                      0, 0, 1)),
                    CameraPose.from_rpy(0, 0, args.height, 0, args.pitch, 0))
    ev = proj.project(labels)
    classes = cell_classes(ev.counts, roles).reshape(grid.height, grid.width)
    palette = seg.labelset.palette_array()[:, ::-1]           # BGR

    def by_class(c):
        out = np.empty(c.shape + (3,), np.uint8)
        out[:] = UNKNOWN_BGR
        known = c != UNKNOWN
        out[known] = palette[c[known]]
        return out

    def by_cost(c):
        out = np.empty(c.shape + (3,), np.uint8)
        out[:] = UNKNOWN_BGR
        known = c >= 0
        out[known] = (255 - c[known].astype(np.int32) * 255 // 100)[:, None].astype(np.uint8)
        return out

    top = draw_grid(classes, grid, by_class)
    cols, rows = to_screen(ev.points[:, 0], ev.points[:, 1], grid)
    for c, r in zip(cols, rows):
        cv2.circle(top, (int(c), int(r)), 2, (0, 255, 255), -1)
    cam_c, cam_r = to_screen(np.array([0.0]), np.array([0.0]), grid)
    cv2.drawMarker(top, (int(cam_c[0]), int(cam_r[0]) - 4), (0, 0, 255), cv2.MARKER_TRIANGLE_UP,
                   14, 2)
    panels = [top]
    for name, ids in roles.groups.items():
        cost, other = (0, 100) if name == 'drivable' else (100, 0)
        g = group_grid(classes.ravel(), ids, cost, other).reshape(classes.shape)
        pic = draw_grid(g, grid, by_cost)
        cv2.putText(pic, f'~/ground/{name}', (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (0, 0, 255), 1, cv2.LINE_AA)
        panels.append(pic)
    colour = seg.colorize(labels)
    blend = cv2.cvtColor((0.5 * rgb + 0.5 * colour).astype(np.uint8), cv2.COLOR_RGB2BGR)
    scale = top.shape[0] / h
    blend = cv2.resize(blend, (int(w * scale), top.shape[0]))
    cv2.putText(blend, what, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                cv2.LINE_AA)
    cv2.putText(top, 'cell classes, footprints (yellow)', (6, 20), cv2.FONT_HERSHEY_SIMPLEX,
                0.55, (255, 255, 255), 1, cv2.LINE_AA)
    gap = np.full((top.shape[0], 8, 3), 255, np.uint8)
    out = np.concatenate([blend, gap] + [x for pic in panels for x in (pic, gap)][:-1], axis=1)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), out, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    known = classes != UNKNOWN
    print(f'{what}: {int(known.sum())} of {classes.size} cells known; by class: '
          + ', '.join(f'{seg.labelset.classes[c]} {int((classes == c).sum())}'
                      for c in np.unique(classes[known])))
    print(f'{len(ev.points)} obstacle footprint points; wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
