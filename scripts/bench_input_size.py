#!/usr/bin/env python3
"""Accuracy and cost of the default model at other network input sizes (no retraining).

The shipped model runs at its card's input size (281x377 for 360x480 CamVid frames: the
frame is shrunk before the network sees it). The network is fully convolutional, so the same
weights run at any size; a larger input gives thin classes (poles, signs, pedestrians) more
pixels on the stride-8 feature grid, at a cost in time. For each ``--sizes`` entry
(HEIGHTxWIDTH) this scores CamVid val (mIoU, per-class IoU; the same ``evaluate_pairs`` as the
model card) and times the whole ``Segmenter`` call per frame (median, with the node's thread
pools), in one process, one size after another. The node takes the same setting as its
``input_size`` parameter. Prints a table, writes JSON.

``--test-time-flip`` adds a row per size with the ``Segmenter``'s ``test_time_flip`` (each
frame and its mirror image, averaged). ``--ensembles 425x569+489x649`` also scores test-time
augmentation the way ``pspnet-ros train --teacher-sizes`` labels frames for distillation: the
mean class probabilities over those input sizes and over each frame and its mirror image
(``train.frame_probabilities``).

    python scripts/bench_input_size.py --out docs/results/input_size_<date>.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.threads import configure_threads  # noqa: E402
THREADS = configure_threads()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'))
    p.add_argument('--card', default=None, help='model card (default: the shipped model)')
    p.add_argument('--sizes', nargs='+',
                   default=['281x377', '361x481', '425x569', '489x649', '553x737'],
                   help='network input sizes, HEIGHTxWIDTH (8k+1 keeps the grid aligned)')
    p.add_argument('--test-time-flip', action='store_true',
                   help="also score each size with the Segmenter's test_time_flip")
    p.add_argument('--ensembles', nargs='*', default=[],
                   help='HxW+HxW...: also score the mean over these sizes and mirrors')
    p.add_argument('--out', default='bench_out/input_size.json')
    args = p.parse_args(argv)

    from pspnet_ros.core import Segmenter
    from pspnet_ros.training.validation import evaluate_pairs
    from pspnet_ros.core.files import default_card_path
    camvid = Path(args.shared) / 'data' / 'camvid'
    pairs = [(img, camvid / 'valannot' / img.name)
             for img in sorted((camvid / 'val').glob('*.png'))]
    if not pairs:
        raise SystemExit(f'no CamVid val images under {camvid / "val"}')
    card = args.card or str(default_card_path())
    rows = []
    for spec in args.sizes:
        h, w = (int(v) for v in spec.lower().split('x'))
        for flip in (False, True) if args.test_time_flip else (False,):
            seg = Segmenter(card, backend='torch', input_size=(h, w), test_time_flip=flip)
            t0 = time.monotonic()
            r = evaluate_pairs(seg, pairs)
            rows.append({'input_size': [h, w], 'test_time_flip': flip, 'miou': r['miou'],
                         'iou': dict(zip(r['class_names'], r['iou'])),
                         'ms_per_frame_median': r['median_total_s'] * 1e3,
                         'seconds': time.monotonic() - t0})
            print(f'{h}x{w}{" test_time_flip" if flip else ""}: mIoU {r["miou"]:.4f}, '
                  f'{r["median_total_s"] * 1e3:.1f} ms', flush=True)
    for spec in args.ensembles:
        rows.append(score_ensemble(card, spec, pairs))
        print(f'{spec} mirrored: mIoU {rows[-1]["miou"]:.4f}, '
              f'{rows[-1]["ms_per_frame_median"]:.1f} ms', flush=True)
    base = rows[0]
    names = list(base['iou'])
    print(f'\n{"input":>9s} {"mIoU":>6s} {"ms":>7s} {"x time":>6s} '
          + ' '.join(f'{n[:6]:>6s}' for n in names))
    for row in rows:
        label = (row['ensemble'] + ' mirrored' if 'ensemble' in row
                 else 'x'.join(map(str, row['input_size']))
                 + (' flip' if row['test_time_flip'] else ''))
        print(f'{label:>9s} {row["miou"]:6.4f} {row["ms_per_frame_median"]:7.1f} '
              f'{row["ms_per_frame_median"] / base["ms_per_frame_median"]:6.2f} '
              + ' '.join(f'{row["iou"][n]:6.3f}' for n in names))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        'machine': {'platform': platform.platform(), 'processor': platform.processor(),
                    'threads': THREADS.describe()},
        'date': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
        'card': card, 'images': len(pairs), 'rows': rows}, indent=1))
    print(f'wrote {out}')
    return 0


def score_ensemble(card: str, spec: str, pairs) -> dict:
    """CamVid val scores of the mean probabilities over ``spec``'s sizes and mirrors."""
    import numpy as np
    import torch
    from pspnet_ros.core import ModelCard
    from pspnet_ros.core.backends.torch_backend import build_model
    from pspnet_ros.core.image import read_image, read_label
    from pspnet_ros.core.labels import get_label_set
    from pspnet_ros.core.metrics import confusion_matrix, scores
    from pspnet_ros.core.model import fuse_conv_bn
    from pspnet_ros.core.sizes import parse_sizes
    from pspnet_ros.training.teacher import frame_probabilities
    mc = ModelCard.load(card)
    model = fuse_conv_bn(build_model(mc)).eval()
    sizes = parse_sizes(spec.replace('+', ','))
    ignore = get_label_set(mc.label_set).ignore_index
    conf = np.zeros((mc.num_classes, mc.num_classes), np.int64)
    times = []
    t0 = time.monotonic()
    for img_path, lab_path in pairs:
        img, lab = read_image(img_path), read_label(lab_path)
        t = time.perf_counter()
        pred = frame_probabilities(model, img, sizes, mc.mean, mc.std,
                                   torch.device('cpu')).argmax(0).numpy()
        times.append(time.perf_counter() - t)
        conf += confusion_matrix(pred, lab, mc.num_classes, ignore)
    r = scores(conf)
    names = get_label_set(mc.label_set).classes
    return {'ensemble': spec, 'mirrored': True, 'miou': r['miou'],
            'iou': dict(zip(names, r['iou'])),
            'ms_per_frame_median': float(np.median(times)) * 1e3,
            'seconds': time.monotonic() - t0}


if __name__ == '__main__':
    sys.exit(main())
