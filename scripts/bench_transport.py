"""Camera frames between two processes over Fast DDS: delivery and latency per size and rate.

A publisher process sends best-effort rgb8 frames (sensor-data QoS, as cameras do) at a fixed
rate; a subscriber process counts what arrives and the latency from each frame's stamp to its
arrival. Both load the same Fast DDS profile (default: config/fastdds_large_frames.xml, as
segment.launch.py sets it; --no-profile for Fast DDS's built-in transports). No project node
is involved: this is the transport alone. Prints a table and writes JSON.

    python scripts/bench_transport.py --out docs/results/transport_<date>.json
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.live.transport import large_frames_profile, profile_env  # noqa: E402


def run_case(size: str, rate: float, count: int, env: dict) -> dict:
    """One publisher/subscriber pair; returns delivery and latency percentiles."""
    cmd = [sys.executable, str(ROOT / 'scripts' / 'transport_probe.py')]
    listen = count / rate + 40.0
    sub = subprocess.Popen(cmd + ['sub', '--count', str(count), '--duration', str(listen)],
                           env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        assert sub.stdout.readline().strip() == 'ready', 'subscriber did not start'
        pub = subprocess.run(cmd + ['pub', '--size', size, '--rate', str(rate), '--count',
                                    str(count)], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=listen + 60)
        sent = json.loads(pub.stdout.strip().splitlines()[-1])
        # The subscriber stops when all frames arrived, else after its listening time; give
        # it a few seconds after the publisher ends for the last frames.
        time.sleep(2.0)
        if sub.poll() is None:
            sub.terminate()
        out, _ = sub.communicate(timeout=30)
        got = json.loads(out.strip().splitlines()[-1]) if out.strip() else {
            'received': 0, 'lost_reported': 0, 'latency_ms': []}
    finally:
        if sub.poll() is None:
            sub.kill()
    lat = np.asarray(got['latency_ms'])
    return {'size': size, 'rate_hz': rate, 'sent': sent['sent'], 'received': got['received'],
            'delivered': got['received'] / sent['sent'],
            'lost_reported': got['lost_reported'],
            'publisher_late_s': sent['finished_late_s'],
            'latency_ms': ({'p50': float(np.percentile(lat, 50)),
                            'p90': float(np.percentile(lat, 90)),
                            'p99': float(np.percentile(lat, 99)), 'max': float(lat.max())}
                           if lat.size else None)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', nargs='+', default=['360x480', '720x1280', '1080x1920'],
                   help='frame sizes HEIGHTxWIDTH')
    p.add_argument('--rates', nargs='+', type=float, default=[10.0, 30.0], help='Hz')
    p.add_argument('--count', type=int, default=150, help='frames per case (default 150)')
    p.add_argument('--profile', default=str(large_frames_profile()),
                   help='Fast DDS profile for both processes')
    p.add_argument('--no-profile', action='store_true', help="Fast DDS's built-in transports")
    p.add_argument('--out', default='bench_transport.json')
    args = p.parse_args(argv)
    profile = '' if args.no_profile else args.profile
    env = profile_env(None, profile)
    env['ROS_DOMAIN_ID'] = str(random.randint(201, 232))      # tests use 100-199
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['ROS_LOCALHOST_ONLY'] = '1'
    rows = []
    for size in args.sizes:
        for rate in args.rates:
            row = run_case(size, rate, args.count, env)
            rows.append(row)
            lat = row['latency_ms'] or {}
            print(f'{size:>10} {rate:5.0f} Hz: {row["received"]:4d}/{row["sent"]} delivered '
                  f'({100 * row["delivered"]:5.1f} %), latency p50 {lat.get("p50", 0):6.1f} ms '
                  f'p99 {lat.get("p99", 0):6.1f} ms, lost reported {row["lost_reported"]}',
                  flush=True)
    report = {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'machine': platform.node(),
              'cpus': len(os.sched_getaffinity(0)), 'profile': profile or None,
              'qos': 'sensor_data (best effort, keep last 5)', 'count': args.count,
              'results': rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + '\n')
    print('\n| frame | rate | delivered | latency p50 / p99 ms |\n|---|---|---|---|')
    for r in rows:
        lat = r['latency_ms'] or {}
        print(f'| {r["size"]} | {r["rate_hz"]:.0f} Hz | {r["received"]}/{r["sent"]} | '
              f'{lat.get("p50", float("nan")):.1f} / {lat.get("p99", float("nan")):.1f} |')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
