#!/usr/bin/env python3
"""How OpenMP threads should wait: torch latency idle and beside busy processes.

PyTorch's CPU pool (libgomp) spins on idle cores between parallel regions: fast on an idle
machine, slow beside other busy processes (they fight for the cores). Passive waiting
(spin count 0) fixes the contended case but wakes a sleeping thread for every parallel region
of every layer, which costs an idle machine. ``GOMP_SPINCOUNT`` sits between the two: spin that
many iterations (about 100 000 per ms), then sleep.

For each setting, in a fresh process (the setting is read when torch loads): the bare shipped
torch model on CamVid val frames with 0 and 2 CPU-bound competitor processes, per-frame p50 and
p99. The settings run in alternating order over ``--rounds`` rounds, so a machine that drifts
favours none; the table gives each setting's median over the rounds. Writes JSON.

    python scripts/bench_wait_policy.py --out docs/results/wait_policy_<date>.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
from bench_contention import start_competitors, stop_competitors  # noqa: E402
SETTINGS = {
    'library default (spin ~3 ms)': {},
    'passive (spin 0)': {'OMP_WAIT_POLICY': 'PASSIVE', 'GOMP_SPINCOUNT': '0'},
    'spin 1000 (~10 us)': {'GOMP_SPINCOUNT': '1000'},
    'spin 10000 (~0.1 ms)': {'GOMP_SPINCOUNT': '10000'},
    'spin 100000 (~1 ms)': {'GOMP_SPINCOUNT': '100000'},
}
CHILD = r"""
import json, sys, time
import numpy as np
from pspnet_ros.bench import load_frames
from pspnet_ros.core import Segmenter
from pspnet_ros.core.files import default_card_path
frames = load_frames(sys.argv[1], int(sys.argv[2]))[0]
seg = Segmenter(default_card_path(), backend='torch')
seg(frames[0])
ms = []
for _ in range(int(sys.argv[3])):
    for f in frames:
        t = time.perf_counter()
        seg(f)
        ms.append((time.perf_counter() - t) * 1e3)
print(json.dumps({'p50': float(np.percentile(ms, 50)), 'p99': float(np.percentile(ms, 99))}))
"""


def measure(env_extra: dict, competitors: int, args) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'KMP_BLOCKTIME')}
    env.update(env_extra)
    env['OMP_NUM_THREADS'] = str(len(os.sched_getaffinity(0)))
    busy = start_competitors(competitors)
    try:
        time.sleep(0.5 if competitors else 0.0)
        out = subprocess.run([sys.executable, '-c', CHILD, args.images, str(args.frames),
                              str(args.repeats)], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=900)
    finally:
        stop_competitors(busy)
    if out.returncode != 0:
        raise SystemExit(f'measurement failed: {out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', default=str(ROOT.parent / 'shared' / 'data' / 'camvid' / 'val'))
    p.add_argument('--frames', type=int, default=10)
    p.add_argument('--repeats', type=int, default=2, help='passes over the frames')
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--competitors', type=int, nargs='+', default=[0, 2])
    p.add_argument('--out', default='bench_wait_policy.json')
    args = p.parse_args(argv)
    names = list(SETTINGS)
    samples: dict = {(n, c): [] for n in names for c in args.competitors}
    for r in range(args.rounds):
        for c in args.competitors:
            for name in (names if r % 2 == 0 else names[::-1]):
                got = measure(SETTINGS[name], c, args)
                samples[(name, c)].append(got)
                print(f'round {r + 1} competitors {c} {name:30s} p50 {got["p50"]:7.1f} '
                      f'p99 {got["p99"]:7.1f} ms', flush=True)
    rows = []
    for name in names:
        row = {'setting': name, 'env': SETTINGS[name]}
        for c in args.competitors:
            row[f'c{c}'] = {q: statistics.median(s[q] for s in samples[(name, c)])
                            for q in ('p50', 'p99')}
            row[f'c{c}_samples'] = samples[(name, c)]
        rows.append(row)
    cols = ' | '.join(f'{c} competitors p50 / p99 ms' for c in args.competitors)
    print(f'\n| setting | {cols} |')
    print('|---|' + '---|' * len(args.competitors))
    for row in rows:
        cells = ' | '.join(f'{row[f"c{c}"]["p50"]:.1f} / {row[f"c{c}"]["p99"]:.1f}'
                           for c in args.competitors)
        print(f'| {row["setting"]} | {cells} |')
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'machine':
        f'{platform.node()} {platform.machine()} {len(os.sched_getaffinity(0))} cpus',
        'frames': args.frames, 'repeats': args.repeats, 'rounds': args.rounds,
        'rows': rows}, indent=1) + '\n')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
