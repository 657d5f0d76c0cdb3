#!/usr/bin/env python3
"""Peak memory per frame: resident set size above a warmed-up Segmenter, by frame size.

Each case runs in a fresh process: load the model, segment one small frame (warm-up), note
the resident size, then decode and segment one large frame as the node does (compressed PNG
or JPEG or a raw array -> RGB -> labels, confidence, occupancy, colour mask and overlay) and
read the peak (``ru_maxrss``). The table gives the peak above the warmed-up size, in MB and
in MB per megapixel of the frame. JSON goes to ``--out``.

    python scripts/bench_memory.py --out docs/results/memory.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import resource
import subprocess
import sys
import time

SIZES = {'1080p': (1080, 1920), '4k': (2160, 3840), '4096x4096': (4096, 4096)}


def _rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frame(h: int, w: int, kind: str):
    """A CamVid val frame scaled to ``h x w`` (synthetic stripes without the data), as the
    node receives it: PNG or JPEG bytes, or a raw RGB array."""
    import cv2
    import numpy as np
    frames = sorted(Path(os.environ.get('CAMVID', '/work/shared/data/camvid')).glob('val/*.png'))
    if frames:
        img = cv2.resize(cv2.imread(str(frames[0])), (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        img = np.zeros((h, w, 3), np.uint8)
        img[:, ::8] = 255
    if kind == 'raw':
        return np.ascontiguousarray(img[:, :, ::-1])
    return cv2.imencode('.png' if kind == 'png' else '.jpg', img)[1].tobytes()


def one_case(size: str, kind: str, confidence: bool) -> dict:
    """Run in a child process: peak RSS above the warmed-up Segmenter for one frame."""
    import numpy as np
    from pspnet_ros.core import Segmenter, default_card_path
    from pspnet_ros.core.rosimage import compressed_to_rgb
    h, w = SIZES[size]
    seg = Segmenter(default_card_path(), backend='torch', max_pixels=4096 * 4096)
    seg(np.zeros((240, 320, 3), np.uint8), confidence=confidence)
    data = _frame(h, w, kind)
    before = _rss_mb()
    # ru_maxrss cannot be reset; the warm-up stays far below a large frame's peak, so the
    # peak read afterwards is this frame's (checked: peak_before is reported too).
    peak_before = _peak_mb()
    t0 = time.perf_counter()
    rgb = data if kind == 'raw' else compressed_to_rgb(kind, data, max_pixels=4096 * 4096)
    res = seg(rgb, confidence=confidence)
    color = seg.colorize(res.labels)
    from pspnet_ros.core.segmenter import overlay
    overlay(rgb, color, 0.5)
    seconds = time.perf_counter() - t0
    peak = _peak_mb()
    mp = h * w / 1e6
    return {'size': size, 'height': h, 'width': w, 'input': kind, 'confidence': confidence,
            'rss_before_mb': round(before, 1), 'peak_before_mb': round(peak_before, 1),
            'peak_mb': round(peak, 1), 'peak_above_mb': round(peak - before, 1),
            'mb_per_megapixel': round((peak - before) / mp, 1), 'seconds': round(seconds, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', nargs='+', default=list(SIZES), choices=list(SIZES))
    p.add_argument('--inputs', nargs='+', default=['png', 'raw'], choices=['png', 'jpeg', 'raw'])
    p.add_argument('--out', default='', help='JSON file to write')
    p.add_argument('--label', default='', help='a name for this run in the JSON')
    p.add_argument('--case', nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        size, kind, conf = args.case
        print(json.dumps(one_case(size, kind, conf == '1')))
        return 0
    rows = []
    print(f'{"frame":>10} {"input":>5} {"conf":>4} {"before MB":>9} {"peak MB":>8} '
          f'{"above MB":>8} {"MB/MP":>6} {"s":>6}')
    for size in args.sizes:
        for kind in args.inputs:
            for conf in ('0', '1'):
                out = subprocess.run([sys.executable, __file__, '--case', size, kind, conf],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(r)
                print(f'{size:>10} {kind:>5} {conf:>4} {r["rss_before_mb"]:9.0f} '
                      f'{r["peak_mb"]:8.0f} {r["peak_above_mb"]:8.0f} '
                      f'{r["mb_per_megapixel"]:6.1f} {r["seconds"]:6.2f}')
    if args.out:
        from pspnet_ros.core.machine import cpu_info, simd_flags
        cpu = cpu_info()
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            'label': args.label, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'commit': commit, 'cpu': cpu['model'], 'cpus': os.cpu_count(),
            'cpu_flags': simd_flags(cpu['flags']),
            'rows': rows}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
