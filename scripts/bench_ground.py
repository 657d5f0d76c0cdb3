#!/usr/bin/env python3
"""Cost of the ground-plane semantic grid (core/ground.py) per frame, on CamVid label images.

Times, one after another in one process: building the per-pixel lookup (once per intrinsics or
pose change), projecting a frame of class ids (a bincount over the lookup plus the obstacle
footprints), projecting with an aligned depth image (32FC1 and 16UC1), fusing two cameras'
evidence, and turning evidence into the published group grids. Frames are CamVid val label
images (480x360, ../shared), repeated ``--repeats`` times; the grid is 20 m x 20 m at 0.1 m
(the issue's target: <= 3 ms a frame). Prints a table of wall-clock medians and p90s and
the median CPU time of the thread (what a stage costs without waiting for the other processes
on the cores) and writes JSON with the CPU model, its SIMD flags, the date and the load
average (other processes on the same CPUs slow every stage: compare figures taken side by
side).

    python scripts/bench_ground.py --out docs/results/ground_<date>.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
import platform
import sys
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.ground import (CameraPose, cell_classes, ClassRoles, fuse,  # noqa: E402
                                    GridSpec, group_grid, GroundProjector, Intrinsics)
from pspnet_ros.core import machine  # noqa: E402
from pspnet_ros.core.labels import CAMVID  # noqa: E402


def cpu_info() -> dict:
    """The CPU's model name, count and the SIMD flags that matter for numpy."""
    info = machine.cpu_info()
    return {'model': info['model'], 'cpus': str(os.cpu_count()),
            'flags': machine.simd_flags(info['flags'])}


def timed(fn, items, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this thread's; numpy runs these stages on one thread) per call.
    The CPU time leaves out the waits that other processes on the same cores cause."""
    wall, cpu = [], []
    for _ in range(repeats):
        for item in items:
            t, c = time.perf_counter(), time.thread_time()
            fn(item)
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
    return wall, cpu


def stats(name: str, times: tuple[list[float], list[float]]) -> dict:
    ms, cpu = np.asarray(times[0]) * 1e3, np.asarray(times[1]) * 1e3
    return {'stage': name, 'n': len(ms), 'median_ms': round(float(np.median(ms)), 3),
            'p90_ms': round(float(np.percentile(ms, 90)), 3),
            'min_ms': round(float(ms.min()), 3),
            'cpu_median_ms': round(float(np.median(cpu)), 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'))
    p.add_argument('--repeats', type=int, default=5, help='passes over the val labels')
    p.add_argument('--resolution', type=float, default=0.1)
    p.add_argument('--extent', type=float, default=20.0, help='grid side, metres')
    p.add_argument('--out', default='bench_out/ground.json')
    args = p.parse_args(argv)

    folder = Path(args.shared) / 'data' / 'camvid' / 'valannot'
    labels = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in sorted(folder.glob('*.png'))]
    if not labels:
        raise SystemExit(f'no CamVid label images under {folder} (see ../shared/data/README)')
    h, w = labels[0].shape
    grid = GridSpec.from_extent(args.extent, args.extent, args.resolution)
    roles = ClassRoles.for_label_set(CAMVID)
    # An assumed CamVid camera (no calibration is published with it): 60 degrees wide,
    # 1.2 m up, the horizon near row 185 as in the val frames; plumb_bob distortion.
    intr = Intrinsics(w, h, (420.0, 0, (w - 1) / 2, 0, 420.0, (h - 1) / 2, 0, 0, 1),
                      (-0.05, 0.01, 0, 0, 0))
    poses = [CameraPose.from_rpy(0, 0, 1.2, 0, 0.013 + 0.001 * i, 0) for i in range(2)]
    proj = GroundProjector(grid, roles, max_range=args.extent / 2)

    load_before = os.getloadavg()
    rows = []
    build = timed(lambda pose: proj.set_camera(intr, pose), poses * 3, 1)
    rows.append(stats('lookup build (per intrinsics/pose change)', build))
    proj.set_camera(intr, poses[0])
    for lab in labels[:5]:
        proj.project(lab)                                          # warm caches
    rows.append(stats(f'project labels {w}x{h}', timed(proj.project, labels, args.repeats)))
    rng = np.random.default_rng(0)
    depth_m = rng.uniform(1.0, 15.0, (h, w)).astype(np.float32)
    depth_mm = (depth_m * 1000).astype(np.uint16)
    rows.append(stats('project labels + depth 32FC1', timed(
        lambda lab: proj.project_depth(lab, depth_m, '32FC1'), labels, args.repeats)))
    rows.append(stats('project labels + depth 16UC1', timed(
        lambda lab: proj.project_depth(lab, depth_mm, '16UC1'), labels, args.repeats)))
    evidence = [proj.project(lab) for lab in labels]
    pairs = list(zip(evidence, evidence[1:]))
    rows.append(stats('fuse 2 cameras', timed(fuse, pairs, args.repeats)))
    groups = roles.groups

    def publish(ev):
        classes = cell_classes(ev.counts, roles)
        return [group_grid(classes, ids) for ids in groups.values()]
    rows.append(stats(f'cell classes + {len(groups)} group grids', timed(
        publish, evidence, args.repeats)))

    print(f'grid {grid.width}x{grid.height} cells at {grid.resolution} m; '
          f'{len(labels)} CamVid val label frames x {args.repeats}; 1-minute load average '
          f'{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after')
    print(f'| {"stage":<44} | {"median ms":>9} | {"p90 ms":>7} | {"CPU ms":>7} | {"n":>5} |')
    print(f'|{"-" * 46}|{"-" * 11}|{"-" * 9}|{"-" * 9}|{"-" * 7}|')
    for r in rows:
        print(f'| {r["stage"]:<44} | {r["median_ms"]:>9.3f} | {r["p90_ms"]:>7.3f} | '
              f'{r["cpu_median_ms"]:>7.3f} | {r["n"]:>5} |')
    report = {
        'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'),
        'cpu': cpu_info(), 'platform': platform.platform(), 'numpy': np.__version__,
        'opencv': cv2.__version__, 'frames': len(labels), 'repeats': args.repeats,
        'image': [w, h], 'grid': {'width': grid.width, 'height': grid.height,
                                  'resolution': grid.resolution},
        'camera': {'k': list(intr.k), 'd': list(intr.d), 'pose_xyzrpy': [0, 0, 1.2, 0, 0.013, 0]},
        'target_ms': 3.0, 'rows': rows,
        # the 1-minute load average: other processes on these CPUs slow every stage
        'loadavg_1min': [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
