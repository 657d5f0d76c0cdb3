"""``pspnet-ros bench``: per-stage latency and throughput of backends, side by side in one run."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import DEFAULT_IMAGES, format_table, parse_spec, run_bench
    from ..core.backends.base import BACKENDS
    from ..core.card import MAX_INPUT_SIDE
    from ..core.sizes import parse_size
    sizes = [parse_size(s, 'input_size', 8, MAX_INPUT_SIDE) for s in args.sizes] \
        if args.sizes else None
    for spec in args.backends:      # typos are errors; missing runtimes are reported rows
        backend = parse_spec(spec)[1]
        if backend not in (*BACKENDS, 'auto'):
            raise ValueError(f'unknown backend {backend!r} in {spec!r}; available: '
                             f'{", ".join(BACKENDS)}, auto')
    images = Path(args.images) if args.images else DEFAULT_IMAGES
    report = run_bench(args.backends, args.model, sizes, images, args.frames, args.warmup,
                       args.repeats, args.auto_budget)
    print(f'{report["date"]} | {report["machine"]} | {report["frames"]} frames x '
          f'{report["repeats"]} from {report["images"]}')
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f'wrote {args.json}')
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser('bench', help='per-stage latency and throughput per backend')
    p.add_argument('--model', default='', help='model card for specs without one '
                   '(default: the shipped CamVid model)')
    p.add_argument('--backends', nargs='+', default=['torch'],
                   help='specs backend[:card.yaml][@key=value;...], e.g. torch '
                   '"torch@channels_last=true" "torch@device=cuda;fp16=true" '
                   'onnxruntime:out/x.onnx.yaml tflite:out/x_int8.tflite.yaml (device= picks '
                   'the device, the other keys are backend options)')
    p.add_argument('--sizes', nargs='*', default=None,
                   help="input sizes HEIGHTxWIDTH (default: each card's); static models skip "
                   'others')
    p.add_argument('--images', default='',
                   help='folder of real frames (default: ../shared/data/camvid/val; synthetic '
                   'frames when absent)')
    p.add_argument('--frames', type=int, default=10, help='frames per pass (default: 10)')
    p.add_argument('--repeats', type=int, default=2, help='passes over the frames (default: 2)')
    p.add_argument('--warmup', type=int, default=2, help='warm-up frames (default: 2)')
    p.add_argument('--auto-budget', type=float, default=10.0,
                   help='seconds a plain "auto" spec may spend timing its candidates, as the '
                   "node's auto_budget_s (the choice is cached per CPU, model and runtime "
                   'versions; 0 = the fixed chain) (default: 10)')
    p.add_argument('--json', default='', help='also write the report as JSON here')
    p.set_defaults(func=cmd_bench)
