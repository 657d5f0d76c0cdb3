"""Latency under CPU contention: bare Segmenter and segment_node, 0 / 1 / 2 busy processes.

For each backend (torch, onnxruntime, tflite int8 by default; the shipped model and its
exports) and each number of CPU-bound competitor processes (pure-Python busy loops, like a
SLAM or planning process that keeps a core busy), in one run:
1. bare: ``Segmenter`` on CamVid frames in this process -> per-frame p50/p90/p99;
2. node: segment_node in its own process (configured as the launch file does), one frame at a
   time: publish, wait for the mask -> end-to-end p50/p90/p99.
Thread pools are set up as a one-camera node sets them (``core.threads``: passive waiting,
no libgomp spin, for bare and node alike); nothing depends on the user's environment.
Prints a table and the targets (2 competitors: p99 <= 1.5x p50, p50 <= 2.5x the idle p50)
and writes JSON.

    python scripts/bench_contention.py --out docs/results/contention_<date>.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import random
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.threads import configure_threads  # noqa: E402

MODELS = ROOT / 'models'
CARDS = {'torch': MODELS / 'pspnet_mobilenetv2_camvid.yaml',
         'onnxruntime': MODELS / 'pspnet_mobilenetv2_camvid.onnx.yaml',
         'tflite': MODELS / 'pspnet_mobilenetv2_camvid_int8.tflite.yaml'}


# A CPU-bound competitor: one core, forever (killed by the parent). A fresh interpreter, not a
# fork: a forked child would inherit rclpy's signal handlers (and ignore SIGTERM) and the DDS
# threads' locks.
BUSY = 'x = 0\nwhile True:\n    x = (x * 1103515245 + 12345) & 0x7fffffff\n'


def start_competitors(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, '-c', BUSY]) for _ in range(n)]


def stop_competitors(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(10)


def percentiles(ms: list[float]) -> dict:
    import numpy as np
    if not ms:
        raise RuntimeError('no timings: not one frame was answered')
    a = np.asarray(ms)
    return {'p50': float(np.percentile(a, 50)), 'p90': float(np.percentile(a, 90)),
            'p99': float(np.percentile(a, 99)), 'max': float(a.max()), 'n': int(a.size)}


def bare(seg, frames, repeats: int) -> list[float]:
    seg(frames[0])                                   # warm-up
    out = []
    for _ in range(repeats):
        for f in frames:
            t = time.perf_counter()
            seg(f)
            out.append((time.perf_counter() - t) * 1e3)
    return out


def node_closed_loop(client, ex, frames, repeats: int, stamp0: int) -> list[float]:
    from pspnet_ros.live import stamp_key
    msgs = [client.make_image(f, 0) for f in frames]
    out = []
    i = 0
    for _ in range(repeats):
        for m in msgs:
            i += 1
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp0 + i, 1_000_000_000)
            key = stamp_key(m.header)
            t = time.monotonic()
            client.publish(m)
            if client.spin_until(ex, lambda: client.complete(key), 30.0):
                out.append((client.received[key].times['mask'] - t) * 1e3)
            client.received.pop(key, None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--backends', nargs='+', default=list(CARDS), choices=list(CARDS))
    p.add_argument('--competitors', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--frames', type=int, default=15, help='distinct frames (default 15)')
    p.add_argument('--repeats', type=int, default=4, help='passes over the frames per case')
    p.add_argument('--images', default=str(ROOT.parent / 'shared' / 'data' / 'camvid' / 'val'))
    p.add_argument('--params-file', default=str(ROOT / 'config' / 'segment.yaml'))
    p.add_argument('--out', default='bench_contention.json')
    args = p.parse_args(argv)
    # One stream of frames, like a one-camera node: no libgomp spin (the node chooses the
    # same for itself; the environment it gets is core.threads.child_env's).
    settings = configure_threads(spin=False)

    domain = random.randint(201, 232)                # tests use 100-199
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from pspnet_ros.core import Segmenter
    from pspnet_ros.live import LiveClient, start_node, stop_node
    from pspnet_ros.live.transport import use_large_frames_profile
    use_large_frames_profile()
    from pspnet_ros.bench import load_frames
    frames = load_frames(args.images, args.frames)[0]
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    rows = []
    try:
        for backend in args.backends:
            card = CARDS[backend]
            if not card.is_file():
                rows.append({'backend': backend, 'skipped': f'{card} not found'})
                continue
            try:
                seg = Segmenter(card, backend=backend)
            except Exception as exc:       # runtime not installed: report, go on
                rows.append({'backend': backend, 'skipped': str(exc).splitlines()[0]})
                continue
            log = out_dir / f'contention_{backend}.node.log'
            proc = start_node(args.params_file, domain,
                              ['-p', f'backend:={backend}', '-p', f'model:={card}'], log)
            client = LiveClient(outputs=('mask',), name=f'pspnet_contention_{backend}')
            ex = SingleThreadedExecutor()
            ex.add_node(client)
            try:
                if not client.wait_for_node(ex, 180):
                    rows.append({'backend': backend, 'skipped': f'node did not start ({log})'})
                    print(f'{backend}: node did not start; see {log}', flush=True)
                    continue
                client.spin_until(ex, lambda: False, 1.0)
                if not node_closed_loop(client, ex, frames[:2], 1, 1):     # warm-up
                    rows.append({'backend': backend,
                                 'skipped': f'no mask came back for the warm-up frames ({log})'})
                    print(f'{backend}: no mask came back; see {log}', flush=True)
                    continue
                for n in args.competitors:
                    workers = start_competitors(n)
                    try:
                        time.sleep(1.0 if n else 0.0)
                        b = percentiles(bare(seg, frames, args.repeats))
                        nd = percentiles(node_closed_loop(client, ex, frames, args.repeats,
                                                          (n + 1) * 10_000_000))
                    finally:
                        stop_competitors(workers)
                    row = {'backend': backend, 'competitors': n, 'bare_ms': b, 'node_ms': nd,
                           'describe': seg.backend.describe()}
                    rows.append(row)
                    print(f'{backend:12s} {n} competitors: bare p50 {b["p50"]:6.1f} p90 '
                          f'{b["p90"]:6.1f} p99 {b["p99"]:6.1f} | node p50 {nd["p50"]:6.1f} '
                          f'p90 {nd["p90"]:6.1f} p99 {nd["p99"]:6.1f} ms', flush=True)
            finally:
                stop_node(proc)
                ex.remove_node(client)
                client.destroy_node()
    finally:
        rclpy.try_shutdown()
    verdicts = targets(rows, max(args.competitors))
    report = {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'machine': platform.node(),
              'cpus': len(settings.usable_cpus), 'threads': settings.describe(),
              'frames': len(frames), 'repeats': args.repeats, 'results': rows,
              'targets': verdicts}
    Path(args.out).write_text(json.dumps(report, indent=1) + '\n')
    print('\n| backend | competitors | bare p50 / p90 / p99 ms | node p50 / p90 / p99 ms |')
    print('|---|---|---|---|')
    for r in rows:
        if 'skipped' in r:
            print(f'| {r["backend"]} | - | skipped: {r["skipped"]} | |')
            continue
        b, nd = r['bare_ms'], r['node_ms']
        print(f'| {r["backend"]} | {r["competitors"]} | {b["p50"]:.1f} / {b["p90"]:.1f} / '
              f'{b["p99"]:.1f} | {nd["p50"]:.1f} / {nd["p90"]:.1f} / {nd["p99"]:.1f} |')
    for v in verdicts:
        print(f'target {v["backend"]} {v["where"]}: p99/p50 {v["p99_over_p50"]:.2f} (<= 1.5), '
              f'p50/idle p50 {v["p50_over_idle"]:.2f} (<= 2.5): '
              f'{"PASS" if v["pass"] else "FAIL"}')
    print(f'wrote {args.out}')
    return 0


def targets(rows: list[dict], most: int) -> list[dict]:
    """With the most competitors: p99 <= 1.5x p50 and p50 <= 2.5x the idle p50."""
    out = []
    for backend in dict.fromkeys(r['backend'] for r in rows if 'skipped' not in r):
        mine = {r['competitors']: r for r in rows if r['backend'] == backend and 'bare_ms' in r}
        if 0 not in mine or most not in mine:
            continue
        for where in ('bare_ms', 'node_ms'):
            idle, busy_ = mine[0][where], mine[most][where]
            a, b = busy_['p99'] / busy_['p50'], busy_['p50'] / idle['p50']
            out.append({'backend': backend, 'where': where.split('_')[0], 'competitors': most,
                        'p99_over_p50': a, 'p50_over_idle': b, 'pass': a <= 1.5 and b <= 2.5})
    return out


if __name__ == '__main__':
    sys.exit(main())
