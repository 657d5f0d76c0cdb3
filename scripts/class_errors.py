#!/usr/bin/env python3
"""Where a model's per-class errors go, on a CamVid split: a diagnosis, not a score.

For each class: IoU, recall (the share of its labelled pixels predicted as it), precision
(the share of the pixels predicted as it that are labelled it), its share of the labelled
pixels and the classes its missed pixels go to. For ``--false-positives`` classes (default
pole, pedestrian, bicyclist): which labelled classes their false positives sit on. For pole:
recall by the horizontal width of the labelled pole run each pixel belongs to (so a thin-object
loss at the network's stride can be told from a naming error).

``--logit-offset pedestrian=-0.5`` adds a constant to a class's logits before the argmax (a
probe of how far a model's class priors are off; fit it on ``--split train``, never on val).

    python scripts/class_errors.py --split val --out docs/results/class_errors_<date>.json
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

WIDTH_BINS = [(1, 2), (3, 4), (5, 8), (9, 16), (17, None)]


def run_widths(mask):
    """For each True pixel of ``mask``, the length of the horizontal run of True it is in."""
    import numpy as np
    out = np.zeros(mask.shape, np.int32)
    for y in np.flatnonzero(mask.any(1)):
        row = np.concatenate(([0], mask[y].astype(np.int8), [0]))
        d = np.diff(row)
        for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            out[y, s:e] = e - s
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'))
    p.add_argument('--card', default=str(ROOT / 'models' / 'pspnet_mobilenetv2_camvid.yaml'))
    p.add_argument('--backend', default='torch')
    p.add_argument('--split', default='val', choices=['train', 'val', 'test'])
    p.add_argument('--input-size', default=None, help='HEIGHTxWIDTH (default: the card)')
    p.add_argument('--false-positives', default='pole,pedestrian,bicyclist')
    p.add_argument('--logit-offset', action='append', default=[], metavar='CLASS=VALUE')
    p.add_argument('--out', default=None, help='write the JSON here')
    args = p.parse_args(argv)

    from pspnet_ros.core.threads import configure_threads
    threads = configure_threads()  # before numpy and torch start their pools
    import numpy as np
    from pspnet_ros.core.data import find_pairs, split_folders
    from pspnet_ros.core.image import read_image, read_label
    from pspnet_ros.core.metrics import confusion_matrix, scores
    from pspnet_ros.core.segmenter import Segmenter

    kw = {}
    if args.input_size:
        from pspnet_ros.core.sizes import parse_size
        kw['input_size'] = list(parse_size(args.input_size, '--input-size'))
    seg = Segmenter(args.card, backend=args.backend, **kw)
    names = list(seg.labelset.classes)
    n = len(names)
    offsets = np.zeros(n, np.float32)
    for item in args.logit_offset:
        cls, _, val = item.partition('=')
        if cls not in names:
            p.error(f'--logit-offset: unknown class {cls!r}; classes: {", ".join(names)}')
        offsets[names.index(cls)] = float(val)
    if offsets.any():
        run = seg.backend.run
        seg.backend.run = lambda batch: run(batch) + offsets[None, :, None, None]
    pole = names.index('pole') if 'pole' in names else None

    pairs = find_pairs(*split_folders(Path(args.shared) / 'data' / 'camvid', args.split))
    if not pairs:
        p.error(f'no CamVid {args.split} pairs under {args.shared}/data/camvid')
    conf = np.zeros((n, n), np.int64)
    hit = np.zeros(len(WIDTH_BINS))
    tot = np.zeros(len(WIDTH_BINS))
    t0 = time.time()
    for ip, lp in pairs:
        lab = read_label(lp)
        pred = seg(read_image(ip), occupancy=False).labels
        conf += confusion_matrix(pred, lab, n, n)
        if pole is not None:
            m = lab == pole
            w = run_widths(m)
            for i, (lo, hi) in enumerate(WIDTH_BINS):
                sel = m & (w >= lo) & (w <= (hi or 10 ** 9))
                tot[i] += sel.sum()
                hit[i] += (sel & (pred == pole)).sum()
    s = scores(conf)
    c = conf.astype(float)
    tp, gt, pr = np.diag(c), c.sum(1), c.sum(0)
    classes = []
    print(f'{args.card} on CamVid {args.split} ({len(pairs)} frames, {time.time() - t0:.0f} s): '
          f'mIoU {s["miou"]:.4f}'
          + (f', logit offsets {args.logit_offset}' if offsets.any() else ''))
    print(f'{"class":12s} {"IoU":>6s} {"recall":>6s} {"prec":>6s} {"px %":>6s}  '
          'missed pixels go to')
    for i, name in enumerate(names):
        miss = [(names[j], c[i, j] / max(gt[i], 1)) for j in np.argsort(-c[i]) if j != i][:3]
        row = {'class': name, 'iou': float(s['iou'][i]), 'recall': float(tp[i] / max(gt[i], 1)),
               'precision': float(tp[i] / max(pr[i], 1)), 'pixel_share': float(gt[i] / c.sum()),
               'missed_to': {k: round(float(v), 4) for k, v in miss}}
        classes.append(row)
        print(f'{name:12s} {row["iou"]:6.3f} {row["recall"]:6.3f} {row["precision"]:6.3f} '
              f'{100 * row["pixel_share"]:6.2f}  ' + ', '.join(f'{k} {v:.2f}' for k, v in miss))
    fps = {}
    for name in [v for v in args.false_positives.split(',') if v]:
        k = names.index(name)
        col = c[:, k]
        fp = col.sum() - col[k]
        fps[name] = {names[j]: round(float(col[j] / fp), 4) for j in np.argsort(-col)
                     if j != k and fp and col[j] / fp >= 0.03}
        print(f'{name} false positives lie on: '
              + ', '.join(f'{k2} {v:.2f}' for k2, v in fps[name].items()))
    widths = []
    if pole is not None:
        for i, (lo, hi) in enumerate(WIDTH_BINS):
            widths.append({'width_px': f'{lo}-{hi}' if hi else f'{lo}+',
                           'share': float(tot[i] / max(tot.sum(), 1)),
                           'recall': float(hit[i] / tot[i]) if tot[i] else None})
            w = widths[-1]
            print(f'pole {w["width_px"]:>5s} px wide: {100 * w["share"]:5.1f} % of pole '
                  'pixels, recall ' + (f'{w["recall"]:.3f}' if tot[i] else '-'))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            'card': str(args.card), 'backend': args.backend, 'split': args.split,
            'frames': len(pairs), 'input_size': kw.get('input_size'),
            'logit_offsets': {names[i]: float(v) for i, v in enumerate(offsets) if v},
            'miou': float(s['miou']), 'classes': classes, 'false_positives_on': fps,
            'pole_recall_by_width': widths, 'confusion': conf.tolist(),
            'machine': platform.platform(), 'threads': threads.describe(),
            'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, indent=1))
        print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
