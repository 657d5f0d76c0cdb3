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

``--workers W`` (CPU) also compares the multi-camera node's two ways of using the CPU threads:
W threads each running frames with an OpenMP pool of threads/W (the node's inference workers)
against one thread with the whole pool, for ``--seconds`` each, alternating, as frames/s.

    python scripts/bench_batch.py --workers 2 --out bench_out/batch_workers.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import platform
import sys
import threading
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
    p.add_argument('--workers', type=int, default=0,
                   help='also compare W inference workers with one (0 = skip)')
    p.add_argument('--seconds', type=float, default=12.0, help='per worker setting and round')
    p.add_argument('--out', default='bench_out/batch.json')
    args = p.parse_args(argv)

    from pspnet_ros.bench import load_frames
    from pspnet_ros.core import Segmenter
    from pspnet_ros.core.files import default_card_path
    sizes = [int(v) for v in args.batches.split(',')]
    frames = load_frames(Path(args.shared) / 'data' / 'camvid' / 'val', max(sizes))[0]
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
    workers = []
    if args.workers > 1:
        settings = [(1, THREADS.threads), (args.workers, max(1, THREADS.threads // args.workers))]
        for r in range(2):
            for n, per in settings if r % 2 == 0 else settings[::-1]:
                fps = run_workers(seg, frames, n, per, args.seconds)
                workers.append({'round': r, 'workers': n, 'threads_each': per, 'fps': fps})
    print(f'{seg.backend.describe()}; {THREADS.describe()}')
    print(f'{"batch":>5s} {"batched ms":>10s} {"1-by-1 ms":>10s} {"speedup":>8s}')
    for row in rows:
        print(f'{row["batch"]:5d} {row["batched_ms"]:10.1f} {row["one_by_one_ms"]:10.1f} '
              f'{row["speedup"]:8.2f}')
    if workers:
        print(f'{"workers":>7s} {"threads each":>12s} {"frames/s":>9s}')
        for row in workers:
            print(f'{row["workers"]:7d} {row["threads_each"]:12d} {row["fps"]:9.2f}')
        med = {n: float(np.median([w['fps'] for w in workers if w['workers'] == n]))
               for n in (1, args.workers)}
        print(f'{args.workers} workers / 1 worker: {med[args.workers] / med[1]:.2f}x')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        'machine': {'platform': platform.platform(), 'processor': platform.processor()},
        'date': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
        'backend': seg.backend.describe(), 'threads': THREADS.describe(),
        'rounds': args.rounds, 'rows': rows, 'workers': workers}, indent=1))
    print(f'wrote {out}')
    return 0


def run_workers(seg, frames, n: int, per: int, seconds: float) -> float:
    """Frames per second of ``n`` threads each running one frame at a time with an OpenMP
    pool of ``per`` threads (the pool size is per calling thread)."""
    import torch
    count = [0] * n
    start = threading.Barrier(n + 1)
    stop = [0.0]

    def work(k: int) -> None:
        torch.set_num_threads(per)
        seg.segment_batch([frames[k % len(frames)]])       # warm this thread's pool
        start.wait()
        i = k
        while time.perf_counter() < stop[0]:
            seg.segment_batch([frames[i % len(frames)]])
            count[k] += 1
            i += n
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + 3600
    start.wait()
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    for t in threads:
        t.join()
    return sum(count) / (time.perf_counter() - t0)


if __name__ == '__main__':
    sys.exit(main())
