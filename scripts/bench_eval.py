#!/usr/bin/env python3
"""Benchmark the bag evaluator itself (no model): score a bag of CamVid val masks."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import resource
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.data import find_pairs  # noqa: E402
from pspnet_ros.core.image import read_image, read_label  # noqa: E402
from pspnet_ros.core.labels import CAMVID  # noqa: E402
from pspnet_ros.core.rosimage import rgb_to_image_fields  # noqa: E402
from pspnet_ros.evaluation.bagio import BagWriter, image_msg, make_header  # noqa: E402
from pspnet_ros.evaluation.evaluator import BagEvaluator, EvalConfig  # noqa: E402

IMAGE, LABELS, PRED = '/camera/image_raw', '/camera/labels', '/pspnet/mask'


def camvid_pairs(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, list | None]:
    """Parse ``ap`` plus ``--camvid``; the args and CamVid's val (image, label) pairs, or None
    (said on stderr) when the folder has no val/."""
    ap.add_argument('--camvid', default=str(ROOT.parent / 'shared' / 'data' / 'camvid'))
    args = ap.parse_args()
    camvid = Path(args.camvid)
    if not (camvid / 'val').is_dir():
        print(f'CamVid not found at {camvid}; pass --camvid', file=sys.stderr)
        return args, None
    return args, find_pairs(camvid / 'val', camvid / 'valannot')


def build_bag(path: Path, pairs: list, frames: int, storage: str = 'sqlite3', first: int = 0,
              period_ns: int = 33_333_333, images: bool = False) -> None:
    """CamVid labels and a shifted copy of them as recorded predictions (realistic errors),
    ``frames`` of them from pair ``first`` on, stamped ``period_ns`` apart; with ``images``,
    the frames too (rgb8), for evaluation with a model."""
    import numpy as np
    with BagWriter(path, storage) as bag:
        for i in range(frames):
            ip, lp = pairs[(first + i) % len(pairs)]
            gt = read_label(lp)
            stamp = 1_700_000_000_000_000_000 + i * period_ns
            header = make_header(bag.ts, stamp, 'camera')
            if images:
                bag.write(IMAGE, image_msg(bag.ts, header,
                                           rgb_to_image_fields(read_image(ip))), stamp)
            bag.write_labels(LABELS, header, gt, stamp)
            pred = np.minimum(np.roll(gt, 4, axis=1), 10).astype(np.uint8)
            bag.write_labels(PRED, header, pred, stamp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--frames', type=int, default=202, help='frames per bag (default 202)')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--storages', nargs='+', default=['sqlite3', 'mcap'])
    ap.add_argument('--json', default='bench_eval.json', help='output JSON file')
    args, pairs = camvid_pairs(ap)
    if pairs is None:
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in args.storages:
            for tol in (0.0, 0.01):
                bag = Path(tmp) / f'bag_{storage}'
                if not bag.exists():
                    build_bag(bag, pairs, args.frames, storage)
                best = None
                for r in range(args.repeats):
                    cfg = EvalConfig(bags=[str(bag)], pred_topic=PRED, label_topic=LABELS,
                                     stamp_tolerance=tol, out=str(Path(tmp) / f'out{r}'),
                                     progress=False)
                    ev = BagEvaluator(cfg, class_names=CAMVID.classes, ignore_index=11)
                    t0 = time.perf_counter()
                    report = ev.run()
                    wall = time.perf_counter() - t0
                    loop = report['throughput']['wall_s']
                    if best is None or loop < best[0]:
                        best = (loop, wall, report)
                loop, wall, report = best
                ev_ms = report['latency_ms']['evaluator']
                rows.append({'storage': storage, 'stamp_tolerance_s': tol,
                             'frames': report['frames']['scored'],
                             'frame_size': '480x360',
                             'loop_s': round(loop, 3),
                             'frames_per_s': round(report['frames']['scored'] / loop, 1),
                             'per_frame_p50_ms': round(ev_ms['p50'], 2),
                             'per_frame_p99_ms': round(ev_ms['p99'], 2),
                             'with_report_s': round(wall, 3)})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = ('storage', 'tol s', 'frames', 'loop s', 'frames/s', 'p50 ms', 'p99 ms',
            'with report s')
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for r in rows:
        print(f'| {r["storage"]} | {r["stamp_tolerance_s"]} | {r["frames"]} | {r["loop_s"]} | '
              f'{r["frames_per_s"]} | {r["per_frame_p50_ms"]} | {r["per_frame_p99_ms"]} | '
              f'{r["with_report_s"]} |')
    print(f'peak RSS {peak_mb:.0f} MB; {os.cpu_count()} CPUs; {platform.processor() or "?"}')
    Path(args.json).write_text(json.dumps({'rows': rows, 'peak_rss_mb': round(peak_mb),
                                           'cpus': os.cpu_count(),
                                           'python': platform.python_version(),
                                           'date': time.strftime('%Y-%m-%d %H:%M %Z')},
                                          indent=1) + '\n')
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
