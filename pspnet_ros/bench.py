"""pspnet-ros bench: per-stage latency and throughput of backends, side by side in one run."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import time

import numpy as np

STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'total')
DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'camvid' / 'val'


def parse_spec(spec: str) -> tuple[str, str, str, dict]:
    """``backend[:card.yaml][@key=value;key=value]`` -> (label, backend, card, options)."""
    from .core.backends import parse_option_value
    head, _, opts = spec.partition('@')
    backend, _, card = head.partition(':')
    options = {}
    for item in filter(None, opts.split(';')):
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'bench option {item!r} in {spec!r} must be key=value')
        options[key] = parse_option_value(value)
    label = backend + (f'[{Path(card).name}]' if card else '') + (f'@{opts}' if opts else '')
    return label, backend, card, options


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    from .core.card import MAX_INPUT_SIDE
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError as exc:
        raise ValueError(f'input size must be HEIGHTxWIDTH like 281x377, got {text!r}') from exc
    if not (8 <= h <= MAX_INPUT_SIDE and 8 <= w <= MAX_INPUT_SIDE):
        raise ValueError(f'input_size {text!r}: each side must be from 8 to {MAX_INPUT_SIDE}')
    return h, w


def load_encoded(folder: Path | None, count: int) -> list[bytes]:
    """``count`` encoded frames (PNG/JPEG bytes): real images from ``folder`` when it exists,
    otherwise synthetic 360x480 PNGs."""
    import cv2
    if folder is not None and folder.is_dir():
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in ('.png', '.jpg', '.jpeg', '.bmp'))[:count]
        if files:
            return [p.read_bytes() for p in files]
    rng = np.random.default_rng(0)
    return [cv2.imencode('.png', rng.integers(0, 255, (360, 480, 3), np.uint8))[1].tobytes()
            for _ in range(count)]


def bench_one(segmenter, encoded: list[bytes], warmup: int, repeats: int) -> dict:
    """Median/p90 per stage (ms) and sequential throughput (frames/s)."""
    import cv2
    for data in encoded[:warmup]:
        segmenter(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB))
    samples = {s: [] for s in STAGES}
    start = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for data in encoded:
            t0 = time.perf_counter()
            img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            res = segmenter(img)
            t = res.timings
            samples['decode'].append(t1 - t0 + t['convert'])
            samples['preprocess'].append(t['preprocess'])
            samples['inference'].append(t['inference'])
            samples['postprocess'].append(t['postprocess'])
            samples['total'].append(time.perf_counter() - t0)
            n += 1
    wall = time.perf_counter() - start
    out = {s: {'median_ms': 1e3 * float(np.median(v)), 'p90_ms': 1e3 * float(np.percentile(v, 90))}
           for s, v in samples.items()}
    out['frames'] = n
    out['throughput_fps'] = n / wall
    return out


def run_bench(specs: list[str], model: str, sizes: list[tuple[int, int]] | None,
              images: Path | None, frames: int, warmup: int, repeats: int) -> dict:
    """Benchmark every backend spec at every size; unavailable ones are reported, not fatal."""
    from .core import ModelCard, Segmenter, default_card_path
    from .core.backends import BackendError
    base_card = model or str(default_card_path())
    encoded = load_encoded(images, frames)
    results = []
    for spec in specs:
        label, backend, card_path, options = parse_spec(spec)
        card = ModelCard.load(card_path or base_card)
        for size in sizes or [tuple(card.input_size)]:
            row = {'backend': label, 'input_size': list(size), 'card': card.name}
            static = card.format != 'safetensors'
            if static and list(size) != list(card.input_size):
                row['skipped'] = (f'{card.format} model has a static input '
                                  f'{card.input_size[0]}x{card.input_size[1]}')
                results.append(row)
                continue
            opts = dict(options)
            device = str(opts.pop('device', 'cpu'))
            print(f'  {label} {size[0]}x{size[1]}: loading, {warmup} warm-up + '
                  f'{len(encoded)} x {repeats} timed frames...', file=sys.stderr, flush=True)
            try:
                seg = Segmenter(card, backend=backend, device=device, input_size=size,
                                backend_options=opts)
            except (BackendError, OSError, ValueError) as exc:
                row['skipped'] = str(exc).splitlines()[0]
                results.append(row)
                continue
            row['describe'] = seg.backend.describe()
            row.update(bench_one(seg, encoded, warmup, repeats))
            results.append(row)
            print(f'  {label} {size[0]}x{size[1]}: {row["throughput_fps"]:.2f} fps',
                  file=sys.stderr)
    _add_speedups(results)
    return {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'machine': machine(),
            'images': str(images) if images and images.is_dir() else 'synthetic 360x480',
            'frames': len(encoded), 'repeats': repeats, 'warmup': warmup, 'results': results}


def _add_speedups(results: list[dict]) -> None:
    """Throughput relative to the first ``torch`` row (fp32 eager) of the same input size."""
    base = {}
    for r in results:
        if r['backend'] == 'torch' and 'throughput_fps' in r:
            base.setdefault(tuple(r['input_size']), r['throughput_fps'])
    for r in results:
        ref = base.get(tuple(r['input_size']))
        if ref and 'throughput_fps' in r:
            r['speedup_vs_torch'] = r['throughput_fps'] / ref


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return f'{cpu}, {cores} cores, {platform.system()} {platform.release()}'


def format_table(report: dict) -> str:
    """Markdown table: one row per backend and size, median/p90 per stage in ms."""
    head = ['backend', 'input', 'decode', 'preprocess', 'inference', 'postprocess', 'total',
            'fps', 'vs torch']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in report['results']:
        size = f'{r["input_size"][0]}x{r["input_size"][1]}'
        if 'skipped' in r:
            lines.append(f'| {r["backend"]} | {size} | skipped: {r["skipped"]} |' + ' |' * 6)
            continue
        cells = [f'{r[s]["median_ms"]:.1f} / {r[s]["p90_ms"]:.1f}' for s in STAGES]
        speed = f'{r["speedup_vs_torch"]:.2f}x' if 'speedup_vs_torch' in r else ''
        lines.append(f'| {r["backend"]} | {size} | ' + ' | '.join(cells)
                     + f' | {r["throughput_fps"]:.2f} | {speed} |')
    return '\n'.join(lines) + '\n\nStage cells: median / p90 in ms.'


def register(subparsers) -> None:
    """Add ``pspnet-ros bench``."""
    p = subparsers.add_parser('bench', help='per-stage latency and throughput per backend')
    p.add_argument('--model', default='', help='model card for specs without one '
                   '(default: the shipped CamVid model)')
    p.add_argument('--backends', nargs='+', default=['torch'],
                   help='specs backend[:card.yaml][@key=value;...], e.g. torch '
                   '"torch@channels_last=true" "torch@device=cuda;fp16=true" '
                   'onnxruntime:out/x.onnx.yaml tflite:out/x_int8.tflite.yaml (device= picks '
                   'the device, the other keys are backend options)')
    p.add_argument('--sizes', nargs='*', default=None,
                   help="input sizes HxW (default: each card's); static models skip others")
    p.add_argument('--images', default=str(DEFAULT_IMAGES),
                   help='folder of real frames (default: ../shared/data/camvid/val; synthetic '
                   'frames when absent)')
    p.add_argument('--frames', type=int, default=10, help='frames per pass (default: 10)')
    p.add_argument('--repeats', type=int, default=2, help='passes over the frames (default: 2)')
    p.add_argument('--warmup', type=int, default=2, help='warm-up frames (default: 2)')
    p.add_argument('--json', default='', help='also write the report as JSON here')
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .core.backends.base import BACKENDS
    sizes = [parse_size(s) for s in args.sizes] if args.sizes else None
    for spec in args.backends:      # typos are errors; missing runtimes are reported rows
        backend = parse_spec(spec)[1]
        if backend not in (*BACKENDS, 'auto'):
            raise ValueError(f'unknown backend {backend!r} in {spec!r}; available: '
                             f'{", ".join(BACKENDS)}, auto')
    report = run_bench(args.backends, args.model, sizes, Path(args.images), args.frames,
                       args.warmup, args.repeats)
    print(f'{report["date"]} | {report["machine"]} | {report["frames"]} frames x '
          f'{report["repeats"]} from {report["images"]}')
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f'wrote {args.json}')
    return 0
