"""Soak test: camera-sized best-effort frames through segment_node for a bounded time.

Starts the node in its own process with the launch file's Fast DDS profile
(config/fastdds_large_frames.xml, in both processes), discovery limited to this host
(loopback only) in a private domain, publishes WIDTHxHEIGHT rgb8 frames at RATE Hz, and
records per minute: frames sent / answered / dropped / lost, end-to-end latency p50/p99
(publish to mask arrival), the node's RSS and thread count over time, and its diagnostics
level. Stops by itself after --minutes, waits until the node is idle, and records the final
level and the balance of its counters (every received frame at one outcome, docs/
ROS_INTERFACE.md "Counters"); prints a table and writes JSON.

    python scripts/soak.py --minutes 30 --out docs/results/soak_<date>.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import random
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.bench import DEFAULT_IMAGES  # noqa: E402
from pspnet_ros.core.threads import configure_threads  # noqa: E402


def proc_status(pid: int) -> dict:
    """RSS (MB) and thread count of a process, from /proc."""
    out = {}
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                out['rss_mb'] = int(line.split()[1]) / 1024
            elif line.startswith('Threads:'):
                out['threads'] = int(line.split()[1])
    except OSError:
        pass
    return out


def percentile(values: list[float], q: float) -> float | None:
    import numpy as np
    return float(np.percentile(values, q)) if values else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--minutes', type=float, default=30.0, help='duration (default 30)')
    p.add_argument('--rate', type=float, default=10.0, help='frames per second (default 10)')
    p.add_argument('--size', default='720x1280', help='frame HEIGHTxWIDTH (default 720x1280)')
    p.add_argument('--params-file', default=str(ROOT / 'config' / 'segment.yaml'))
    p.add_argument('--profile', default=str(ROOT / 'config' / 'fastdds_large_frames.xml'),
                   help="Fast DDS profile for both processes ('' = none)")
    p.add_argument('--images', default=str(DEFAULT_IMAGES))
    p.add_argument('--sample-sec', type=float, default=10.0, help='RSS/thread sampling period')
    p.add_argument('--out', default='soak.json', help='JSON report')
    args = p.parse_args(argv)
    minutes = max(args.minutes, 0.05)

    # Both processes: the launch profile, this host only, a private domain.
    if args.profile:
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = args.profile
    else:
        os.environ.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ['ROS_LOCALHOST_ONLY'] = '1'     # older distributions
    domain = random.randint(201, 232)   # tests use 100-199
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    configure_threads()

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from pspnet_ros.live import diag_values, LiveClient, start_node, stop_node
    from pspnet_ros.bench import load_frames
    from pspnet_ros.core.sizes import parse_size

    h, w = parse_size(args.size, 'frame size')
    frames = load_frames(args.images, 8, (h, w))[0]
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = out_path.with_suffix('.node.log')
    proc = start_node(args.params_file, domain, log_path=log_path)
    rclpy.init()
    client = LiveClient(outputs=('mask',), name='pspnet_soak_client')
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    minutes_rows, samples = [], []
    sent_total = answered_total = 0
    report = {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'machine': platform.node(),
              'cpus': len(os.sched_getaffinity(0)), 'size': [h, w], 'rate_hz': args.rate,
              'minutes': minutes, 'profile': args.profile, 'params_file': args.params_file,
              'discovery': 'LOCALHOST', 'domain': domain}
    try:
        if not client.wait_for_node(ex, 180):
            print('error: node did not come up; see ' + str(log_path), file=sys.stderr)
            return 2
        client.spin_until(ex, lambda: False, 2.0)
        msgs = [client.make_image(f, 0) for f in frames]
        period = 1.0 / args.rate
        t0 = time.monotonic()
        end = t0 + minutes * 60
        next_pub, next_sample, next_minute = t0, t0, t0 + 60
        i = 0
        cur = {'sent': 0, 'answered': 0, 'lat': []}
        sending_level = ('none', '')
        while True:
            now = time.monotonic()
            if now >= next_pub and now < end:
                msg = msgs[i % len(msgs)]
                stamp = 1_700_000_000_000_000_000 + i * int(period * 1e9)
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                client.publish(msg)
                cur['sent'] += 1
                sent_total += 1
                i += 1
                next_pub += period
                if next_pub < now - 1.0:   # fell far behind (machine stalled): do not burst
                    next_pub = now + period
            wait = min(max(next_pub - time.monotonic(), 0.001), 0.05) if now < end else 0.05
            ex.spin_once(timeout_sec=wait)
            # Pair answers with their send times, then forget both (a soak keeps no frames).
            with client._lock:
                done = list(client.received.items())
                client.received.clear()
            for key, rec in done:
                sent_at = client.sent.pop(key, None)
                if sent_at is not None and 'mask' in rec.times:
                    cur['lat'].append((rec.times['mask'] - sent_at) * 1e3)
                    cur['answered'] += 1
                    answered_total += 1
            if len(client.diagnostics) > 5:
                del client.diagnostics[:-5]
            if now < end:
                sending_level = node_level(client)
            now = time.monotonic()
            if now >= next_sample:
                st = proc_status(proc.pid)
                st['t_s'] = round(now - t0, 1)
                samples.append(st)
                next_sample += args.sample_sec
            if now >= next_minute or (now >= end + 3.0):
                diag = (diag_values(client.diagnostics[-1], client.node_name)
                        if client.diagnostics else {})
                level, message = node_level(client)
                row = {'minute': len(minutes_rows) + 1, 'sent': cur['sent'],
                       'answered': cur['answered'],
                       'p50_ms': percentile(cur['lat'], 50), 'p99_ms': percentile(cur['lat'], 99),
                       'node_received_total': int(diag.get('frames.received', 0)),
                       'node_dropped_total': int(diag.get('frames.dropped', 0)),
                       'node_lost_total': int(diag.get('frames.lost', 0)),
                       'level': level, 'message': message,
                       **{k: v for k, v in proc_status(proc.pid).items()}}
                minutes_rows.append(row)
                print(f'minute {row["minute"]:3d}: sent {row["sent"]} answered '
                      f'{row["answered"]} p50 {row["p50_ms"] or 0:.0f} ms p99 '
                      f'{row["p99_ms"] or 0:.0f} ms rss {row.get("rss_mb", 0):.0f} MB threads '
                      f'{row.get("threads", 0)} lost {row["node_lost_total"]} dropped '
                      f'{row["node_dropped_total"]}', flush=True)
                cur = {'sent': 0, 'answered': 0, 'lat': []}
                next_minute += 60
                _write(out_path, report, minutes_rows, samples, sent_total, answered_total)
            if now >= end + 3.0:        # a few seconds for the last answers
                break
            if proc.poll() is not None:
                report['error'] = f'node exited with code {proc.returncode}'
                break
        if 'error' not in report:
            # After the last frame the camera has stopped: the level says so (stalled).
            report['final'] = {**final_state(client, ex), 'level_while_sending': sending_level[0],
                               'message_while_sending': sending_level[1]}
            f = report['final']
            print(f'level while sending: {sending_level[0]} ({sending_level[1]})')
            print(f'final: level {f["level"]} ({f["message"]}); received {f["received"]} = '
                  f'outcomes {f["outcomes"]} + in progress {f["in_progress"]}: balance '
                  f'{"holds" if f["balanced"] else "BROKEN"}; lost {f["lost"]}, gaps inferred '
                  f'{f["gaps_inferred"]}', flush=True)
    finally:
        code = stop_node(proc)
        report['node_exit_code'] = code
        ex.remove_node(client)
        client.destroy_node()
        rclpy.try_shutdown()
        _write(out_path, report, minutes_rows, samples, sent_total, answered_total)
    print(f'wrote {out_path} (node log {log_path})')
    return 0 if 'error' not in report else 1


OUTCOMES = ('frames.processed', 'frames.dropped', 'frames.skipped_no_subscribers',
            'frames.errors', 'frames.discarded_on_transition')
LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}


def node_level(client) -> tuple[str, str]:
    """The level and message of the node's status in the newest diagnostics message."""
    for arr in reversed(client.diagnostics[-1:]):
        for st in arr.status:
            if f'/{client.node_name}:' in st.name and st.name.endswith(': segmentation'):
                return LEVELS.get(st.level[0], str(st.level)), st.message
    return 'none', ''


def final_state(client, ex, timeout: float = 30.0) -> dict:
    """Once the node is idle (``frames.in_progress`` 0): its level and counter balance."""
    from pspnet_ros.live import diag_values
    vals: dict = {}

    def idle() -> bool:
        nonlocal vals
        if client.diagnostics:
            vals = diag_values(client.diagnostics[-1], client.node_name)
        return vals.get('frames.in_progress') == '0'
    client.spin_until(ex, idle, timeout)
    client.spin_until(ex, lambda: False, 1.5)       # the next message: the level now
    level, message = node_level(client)
    received = int(vals.get('frames.received', 0))
    outcomes = {k: int(vals.get(k, 0)) for k in OUTCOMES}
    in_progress = int(vals.get('frames.in_progress', -1))
    return {'level': level, 'message': message, 'received': received,
            'outcomes': sum(outcomes.values()), 'outcome_counts': outcomes,
            'in_progress': in_progress,
            'balanced': received == sum(outcomes.values()) and in_progress == 0,
            'errors': {k: v for k, v in vals.items() if k.startswith('errors.')},
            'lost': int(vals.get('frames.lost', 0)),
            'gaps_inferred': int(vals.get('frames.gaps_inferred', 0))}


def _write(path: Path, report: dict, minutes_rows: list, samples: list, sent: int,
           answered: int) -> None:
    rss = [s['rss_mb'] for s in samples if 'rss_mb' in s]
    threads = [s['threads'] for s in samples if 'threads' in s]
    summary = {'sent': sent, 'answered': answered,
               'answered_fraction': answered / sent if sent else None,
               'lost_total': minutes_rows[-1]['node_lost_total'] if minutes_rows else None,
               'dropped_total': minutes_rows[-1]['node_dropped_total'] if minutes_rows else None,
               'rss_mb_first_last_max': [rss[0], rss[-1], max(rss)] if rss else None,
               'threads_first_last_max': [threads[0], threads[-1], max(threads)]
               if threads else None}
    path.write_text(json.dumps({**report, 'summary': summary, 'per_minute': minutes_rows,
                                'samples': samples}, indent=1) + '\n')


if __name__ == '__main__':
    sys.exit(main())
