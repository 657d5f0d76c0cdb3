"""``pspnet-ros segment``: segment image files; write mask, colour and overlay PNGs."""
from __future__ import annotations

import json
from pathlib import Path
import sys

from .common import add_model_args, segmenter_from_args


def image_paths(given: list[str]) -> list[str]:
    """The files to segment: each file as given, each folder's images (``core.files``'
    suffixes, name order). A folder without images is an error naming the suffixes."""
    from ..core.files import IMAGE_EXTS, list_images
    out = []
    for item in given:
        if Path(item).is_dir():
            found = list_images(item)
            if not found:
                raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTS)}) in folder {item}')
            out += [str(p) for p in found]
        else:
            out.append(item)
    return out


def cmd_segment(args) -> int:
    import cv2
    import numpy as np
    from ..core import ImageError, read_image
    from ..core.segmenter import overlay
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f'--alpha must be between 0 and 1, got {args.alpha}')
    args.images = image_paths(args.images)
    seg = segmenter_from_args(args)
    out = Path(args.out)
    failures = 0
    for path in args.images:
        try:
            img = read_image(path)
        except ImageError as exc:
            print(f'error: {exc}', file=sys.stderr)
            failures += 1
            continue
        out.mkdir(parents=True, exist_ok=True)
        res = seg(img)
        stem = Path(path).stem
        color = seg.colorize(res.labels)
        cv2.imwrite(str(out / f'{stem}_mask.png'), res.labels)
        cv2.imwrite(str(out / f'{stem}_color.png'), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / f'{stem}_overlay.png'),
                    cv2.cvtColor(overlay(img, color, args.alpha), cv2.COLOR_RGB2BGR))
        occ = res.occupancy
        top = np.argsort(occ.fractions)[::-1]
        parts = [f'{seg.class_names[i]} {occ.fractions[i]:.1%}' for i in top if occ.counts[i]]
        print(f'{path}: {img.shape[1]}x{img.shape[0]} in {res.timings["total"] * 1e3:.0f} ms | '
              + ', '.join(parts))
        if args.json:
            rec = {'image': str(path), 'timings_s': res.timings,
                   'occupancy': {seg.class_names[i]: {'fraction': float(occ.fractions[i]),
                                                      'count': int(occ.counts[i])}
                                 for i in range(seg.num_classes)}}
            print(json.dumps(rec))
    written = len(args.images) - failures
    if not written:
        return 2                    # each failure has had its error line; nothing written
    print(f'wrote masks, colour masks and overlays of {written} image'
          f'{"s" if written > 1 else ""} to {out}/')
    return 1 if failures else 0


def register(sub) -> None:
    p = sub.add_parser('segment', help='segment image files; write mask/colour/overlay PNGs')
    p.add_argument('images', nargs='+', help='image files (PNG, JPEG, BMP, ...) or folders of '
                   'them')
    p.add_argument('--out', default='segment_out', help='output folder (default: segment_out; '
                   'files of the same names are replaced)')
    p.add_argument('--alpha', type=float, default=0.5, help='overlay mask weight (0..1)')
    p.add_argument('--json', action='store_true', help='also print one JSON line per image')
    p.add_argument('--test-time-flip', action='store_true', help='also segment each mirrored '
                   'image and average the two (about 2x the time, a little more accurate)')
    add_model_args(p)
    p.set_defaults(func=cmd_segment)
