"""``pspnet-ros export``: a model card to ONNX / TFLite / int8 TFLite / Edge TPU."""
from __future__ import annotations

import sys

from ..export import ExportError, FORMATS


def register(subparsers) -> None:
    """Add ``pspnet-ros export``."""
    p = subparsers.add_parser('export', help='export a model card to ONNX / TFLite / Edge TPU')
    p.add_argument('card', help='model card YAML of a PyTorch model')
    p.add_argument('--format', required=True, choices=FORMATS, dest='fmt')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--calib-dir', default=None,
                   help='calibration images for int8 (e.g. ../shared/data/camvid/train)')
    p.add_argument('--calib-count', type=int, default=32,
                   help='calibration frames (default: 32)')
    p.add_argument('--no-bias-correction', dest='bias_correction', action='store_false',
                   help='int8: keep the biases as trained instead of cancelling the mean '
                   'shift weight rounding causes (for comparison)')
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    try:
        from ..export import export
        results = export(args.card, args.fmt, args.out, args.calib_dir, args.calib_count,
                         args.bias_correction)
    except ExportError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    for r in results:
        print(f'{r.format}: {r.model} (card {r.card})')
        if r.ops:
            counts = {op: r.ops.count(op) for op in sorted(set(r.ops))}
            print('  ops: ' + ', '.join(f'{k} x{v}' for k, v in counts.items()))
        for n in r.notes:
            print('  ' + n.replace('\n', '\n  '))
    return 0
