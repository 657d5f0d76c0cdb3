#!/usr/bin/env python3
"""Batched against one-by-one inference: what one batch of N camera frames saves.

For each batch size N in ``--batches`` this times ``Segmenter.segment_batch`` on N different
480x360 CamVid val frames (one per camera) against N ``segment_batch`` calls of one frame each,
alternating the two in every round so a drifting machine favours neither, and reports the
median times and the throughput ratio (frames/s batched over frames/s one by one). This is the
multi-camera node's inference step without ROS; ``scripts/bench_multicam.py`` measures the whole
node. Issue 12's GPU target: 4 cameras batched >= 1.5x four batch-1 runs
(``--device cuda --options cuda_graphs=true``: one CUDA graph per batch size).

    python scripts/bench_batch.py --device cuda --options fp16=true cuda_graphs=true \
        --out bench_out/batch_cuda.json
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

import numpy as np  # noqa: E402


def parse_options(items: list[str]) -> dict:
    """``key=value`` backend options (true/false, numbers, or strings)."""
    out = {}
    for item in items:
        key, _, value = item.partition('=')
        if not key or not _:
            raise SystemExit(f'--options: expected key=value, got {item!r}')
        low = value.lower()
        if low in ('true', 'false'):
            out[key] = low == 'true'
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'))
    p.add_argument('--backend', default='torch')
    p.add_argument('--device', default='cpu')
    p.add_argument('--options', nargs='*', default=[], help='backend options, key=value')
    p.add_argument('--batches', default='2,4', help='batch sizes to compare with batch 1')
    p.add_argument('--rounds', type=int, default=10)
    p.add_argument('--out', default='bench_out/batch.json')
    args = p.parse_args(argv)

    from pspnet_ros.core import read_image, Segmenter
    from pspnet_ros.core.segmenter import default_card_path
    sizes = [int(v) for v in args.batches.split(',')]
    files = sorted((Path(args.shared) / 'data' / 'camvid' / 'val').glob('*.png'))[:max(sizes)]
    rng = np.random.default_rng(0)
    frames = [read_image(f) for f in files] + [
        rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
        for _ in range(max(sizes) - len(files))]
    seg = Segmenter(default_card_path(), backend=args.backend, device=args.device,
                    backend_options=parse_options(args.options))
    rows = []
    for n in sizes:
        batch = frames[:n]
        for _ in range(3):                   # warm-up (and a CUDA graph per shape)
            seg.segment_batch(batch)
            seg.segment_batch(batch[:1])
        together, apart = [], []
        for r in range(args.rounds):
            for mode in (('together', 'apart') if r % 2 == 0 else ('apart', 'together')):
                t = time.perf_counter()
                if mode == 'together':
                    seg.segment_batch(batch)
                    together.append(time.perf_counter() - t)
                else:
                    for frame in batch:
                        seg.segment_batch([frame])
                    apart.append(time.perf_counter() - t)
        t_b, t_1 = float(np.median(together)), float(np.median(apart))
        rows.append({'batch': n, 'batched_ms': t_b * 1e3, 'one_by_one_ms': t_1 * 1e3,
                     'speedup': t_1 / t_b})
    print(f'{seg.backend.describe()}; {THREADS.describe()}')
    print(f'{"batch":>5s} {"batched ms":>10s} {"1-by-1 ms":>10s} {"speedup":>8s}')
    for row in rows:
        print(f'{row["batch"]:5d} {row["batched_ms"]:10.1f} {row["one_by_one_ms"]:10.1f} '
              f'{row["speedup"]:8.2f}')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        'machine': {'platform': platform.platform(), 'processor': platform.processor()},
        'date': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
        'backend': seg.backend.describe(), 'threads': THREADS.describe(),
        'rounds': args.rounds, 'rows': rows}, indent=1))
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
