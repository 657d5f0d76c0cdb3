#!/usr/bin/env python3
"""Multi-camera benchmark: one multi-camera node against N single-camera nodes, same backend.

For each camera count N (default 1, 2, 4), in one run and over real DDS:
- ``multi``: one ``segment_node`` with ``cameras: [cam0 .. camN-1]`` (one model, batches);
- ``single``: N ``segment_node`` processes, one camera each (N models, N inference threads).
Each setup gets two phases of ``--seconds``: every camera publishing 480x360 frames (CamVid
val, different frames per camera) at ``--rate`` (10 Hz), then at ``--overload-rate``. Cameras
are not synchronised: camera i publishes ``i / N`` of a period after camera 0.

Measured per setup and phase: resident memory of the node process(es) (VmRSS summed, sampled
about 4 times a second while the phase publishes: the median is ``rss_mb``, also its maximum
and the value at the phase's end; one sample swings by tens of MB with where the allocator
stands in a batch), the
aggregate output rate (masks received per second, all cameras), the per-camera output rates
and their spread (largest deviation from the mean, in % of the mean), per-camera end-to-end
p99 (publish -> mask received), and the bare ``Segmenter.segment_batch`` time for one batch of
min(N, max_batch) frames in this process, to compare p99 against.

Targets (issue 12, 2-core CPU): 4-camera node RSS <= 1.3x the 1-camera node's; its
aggregate output rate >= four single-camera nodes'; per-camera rates within +-15 % under
overload; per-camera p99 <= 2.5x the bare time for one batch. Prints a table, writes JSON.

A shared 2-core machine drifts by tens of percent within minutes, so with ``--repeats R`` every
setup runs R times, interleaved (multi and single alternate, the order flipping each round),
and the checks use each setup's median over its repeats.
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

# The bare Segmenter gets the thread pools the node sets up (before numpy and torch load), so
# that node/bare compares the node's own costs, not two wait policies.
from pspnet_ros.core.threads import configure_threads  # noqa: E402
THREADS = configure_threads()

import numpy as np  # noqa: E402


def proc_memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process in MB, (VmRSS, RssAnon): all of it, and only its private
    memory (VmRSS also counts mapped files and the DDS shared-memory segments); 0 if it is
    gone."""
    found = {}
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            key = line.split(':', 1)[0]
            if key in ('VmRSS', 'RssAnon'):
                found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found.get('VmRSS', 0.0), found.get('RssAnon', 0.0)


def bare_batch_ms(seg, frames: list[np.ndarray], n: int, repeats: int) -> float:
    """Median time of one ``segment_batch`` of ``n`` frames (labels + occupancy)."""
    batch = [frames[i % len(frames)] for i in range(n)]
    seg.segment_batch(batch)                      # first run of this batch size: warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        seg.segment_batch(batch)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


class Setup:
    """Node process(es) for N cameras plus one LiveClient per camera."""

    def __init__(self, mode: str, n: int, params_file: str, domain: int, out: Path,
                 max_batch: int, executor):
        from pspnet_ros.live import LiveClient, start_node
        self.mode, self.n, self.ex = mode, n, executor
        self.cams = [f'cam{i}' for i in range(n)]
        self.procs, self.clients = [], {}
        if mode == 'multi':
            args = ['-r', '__node:=bench_multi', '-p', f'cameras:=[{",".join(self.cams)}]',
                    '-p', f'max_batch:={max_batch}']
            self.procs.append(start_node(params_file, domain, args,
                                         out / f'multi_{n}.node.log'))
            for cam in self.cams:
                self.clients[cam] = LiveClient(node_ns='/bench_multi', camera=cam,
                                               outputs=('mask',), name=f'bench_{cam}')
        else:
            for i, cam in enumerate(self.cams):
                args = ['-r', f'__node:=bench_single_{i}', '-r', f'image:={cam}/image']
                self.procs.append(start_node(params_file, domain, args,
                                             out / f'single_{n}_{i}.node.log'))
                self.clients[cam] = LiveClient(node_ns=f'/bench_single_{i}',
                                               image_topic=f'{cam}/image', outputs=('mask',),
                                               name=f'bench_{cam}')
        for c in self.clients.values():
            executor.add_node(c)

    def wait_ready(self, timeout: float = 180.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.1)
            if all(c.pub.get_subscription_count() > 0 and c.label_info is not None
                   for c in self.clients.values()):
                return True
        return False

    def spin_until(self, predicate, timeout: float) -> bool:
        return next(iter(self.clients.values())).spin_until(self.ex, predicate, timeout)

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, RssAnon) summed over the node processes, one read of each."""
        per_proc = [proc_memory_mb(p.pid) for p in self.procs]
        return sum(r for r, _ in per_proc), sum(a for _, a in per_proc)

    def rss_mb(self) -> float:
        return self.memory_mb()[0]

    def phase(self, frames: dict[str, list[np.ndarray]], rate: float, seconds: float,
              stamp0: int, settle: float) -> dict:
        """Publish every camera at ``rate`` for ``seconds`` (staggered); collect answers."""
        period = 1.0 / rate
        sent = {cam: [] for cam in self.cams}
        t0 = time.monotonic()
        events = []
        k = 0
        while k * period < seconds:
            for i, cam in enumerate(self.cams):
                events.append((t0 + k * period + i * period / self.n, cam, k))
            k += 1
        rss_samples, anon_samples, next_sample = [], [], t0
        for due, cam, k in sorted(events):
            self.spin_until(lambda: time.monotonic() >= due, 10)
            if time.monotonic() >= next_sample:     # about 4 Hz over the whole phase
                rss, anon = self.memory_mb()
                rss_samples.append(rss)
                anon_samples.append(anon)
                next_sample += 0.25
            client = self.clients[cam]
            msg = client.make_image(frames[cam][k % len(frames[cam])], stamp0 + k,
                                    frame_id=cam)
            client.publish(msg)
            sent[cam].append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        t_end = time.monotonic()
        rss_end, anon_end = self.memory_mb()
        rss_samples.append(rss_end)
        anon_samples.append(anon_end)

        def all_done():
            return all(c.complete(key) for cam, c in self.clients.items() for key in sent[cam])
        self.spin_until(all_done, settle)
        per_cam = {}
        for cam, client in self.clients.items():
            got = [key for key in sent[cam] if client.complete(key)]
            e2e = [client.received[key].times['mask'] - client.sent[key] for key in got]
            per_cam[cam] = {
                'sent': len(sent[cam]), 'answered': len(got),
                'output_rate_hz': len(got) / (t_end - t0),
                'e2e_ms_p50': float(np.percentile(e2e, 50) * 1e3) if e2e else None,
                'e2e_ms_p99': float(np.percentile(e2e, 99) * 1e3) if e2e else None,
            }
            for key in sent[cam]:           # keep the client's memory flat between phases
                client.received.pop(key, None)
                client.sent.pop(key, None)
        rates = [v['output_rate_hz'] for v in per_cam.values()]
        mean = float(np.mean(rates))
        p99s = [v['e2e_ms_p99'] for v in per_cam.values() if v['e2e_ms_p99'] is not None]
        return {'input_rate_hz': rate, 'seconds': t_end - t0,
                'rss_mb': float(np.median(rss_samples)), 'rss_mb_max': max(rss_samples),
                'rss_mb_end': rss_end, 'rss_anon_mb': float(np.median(anon_samples)),
                'aggregate_output_rate_hz': float(sum(rates)),
                'rate_spread_pct': (max(abs(r - mean) for r in rates) / mean * 100
                                    if mean > 0 else None),
                'e2e_ms_p99_worst_camera': max(p99s) if p99s else None,
                'cameras': per_cam}

    def close(self) -> list[int]:
        from pspnet_ros.live import stop_node
        codes = [stop_node(p) for p in self.procs]
        for c in self.clients.values():
            self.ex.remove_node(c)
            c.destroy_node()
        return codes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--shared', default=str(ROOT.parent / 'shared'))
    p.add_argument('--cameras', default='1,2,4', help='camera counts to compare')
    p.add_argument('--modes', default='multi,single', help='multi, single or both')
    p.add_argument('--rate', type=float, default=10.0, help='per-camera input rate (Hz)')
    p.add_argument('--overload-rate', type=float, default=30.0,
                   help='per-camera input rate of the overload phase (Hz)')
    p.add_argument('--seconds', type=float, default=20.0, help='length of each phase')
    p.add_argument('--settle', type=float, default=5.0,
                   help='seconds to wait for outstanding masks after a phase')
    p.add_argument('--size', default='360x480', help='frame HEIGHTxWIDTH')
    p.add_argument('--frames', type=int, default=20, help='distinct frames per camera')
    p.add_argument('--max-batch', type=int, default=4, help='max_batch of the multi node')
    p.add_argument('--bare-repeats', type=int, default=10)
    p.add_argument('--repeats', type=int, default=2,
                   help='runs of every setup, interleaved; checks use the medians')
    p.add_argument('--params-file', default=str(ROOT / 'config' / 'segment.yaml'),
                   help='node parameters; the bare Segmenter gets the same backend options')
    p.add_argument('--out', default='bench_out/multicam.json')
    args = p.parse_args(argv)
    counts = [int(v) for v in args.cameras.split(',') if v.strip()]
    modes = [m.strip() for m in args.modes.split(',') if m.strip()]
    if set(modes) - {'multi', 'single'}:
        p.error(f'--modes takes multi and/or single, got {args.modes!r}')
    from pspnet_ros.bench import load_frames
    from pspnet_ros.core.sizes import parse_size
    h, w = parse_size(args.size, 'frame size')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pool = load_frames(Path(args.shared) / 'data' / 'camvid' / 'val', args.frames * max(counts),
                       (h, w))[0]
    frames = {f'cam{i}': pool[i::max(counts)] for i in range(max(counts))}

    import yaml
    from pspnet_ros.core import default_card_path, Segmenter
    from pspnet_ros.node.config import parse_options
    params = yaml.safe_load(Path(args.params_file).read_text())['/**']['ros__parameters']
    options = parse_options(params.get('backend_options', []))
    seg = Segmenter(params.get('model') or default_card_path(),
                    backend=params.get('backend', 'torch'), device=params.get('device', 'cpu'),
                    backend_options=options)
    bare = {n: bare_batch_ms(seg, pool, min(n, args.max_batch), args.bare_repeats)
            for n in counts}
    del seg

    domain = random.randint(120, 200)
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from pspnet_ros.live.transport import use_large_frames_profile
    use_large_frames_profile()      # both processes, as segment.launch.py does
    rclpy.init()
    ex = SingleThreadedExecutor()
    runs = []
    stamp = 1_000_000_000
    order = []
    for r in range(args.repeats):
        for n in counts:
            # Alternate which setup goes first, so a drifting machine favours neither.
            order += [(r, n, m) for m in (modes if (r + counts.index(n)) % 2 == 0
                                          else modes[::-1])]
    try:
        for rep, n, mode in order:
            setup = Setup(mode, n, args.params_file, domain, out.parent, args.max_batch,
                          ex)
            try:
                if not setup.wait_ready():
                    raise SystemExit(f'{mode} {n}: node(s) did not come up; logs in '
                                     f'{out.parent}')
                warm = setup.phase(frames, 2.0, 2.0, stamp, args.settle)  # warm-up
                stamp += 1_000_000
                rss_idle = setup.rss_mb()
                run = {'mode': mode, 'cameras': n, 'repeat': rep,
                       'rss_mb_after_warmup': rss_idle,
                       'warmup_answered': sum(c['answered'] for c in
                                              warm['cameras'].values())}
                for name, rate in (('nominal', args.rate), ('overload', args.overload_rate)):
                    run[name] = setup.phase(frames, rate, args.seconds, stamp, args.settle)
                    stamp += 1_000_000
                    run[name]['p99_over_bare_batch'] = (
                        run[name]['e2e_ms_p99_worst_camera'] / bare[n]
                        if run[name]['e2e_ms_p99_worst_camera'] else None)
            finally:
                run['exit_codes'] = setup.close()
            runs.append(run)
            print(f'done: {mode} x{n} (repeat {rep + 1}/{args.repeats})', flush=True)
    finally:
        rclpy.try_shutdown()

    def med(mode, n, phase, key):
        """Median of one measure over a setup's repeats (None if it never ran)."""
        vals = [r[phase][key] for r in runs if r['mode'] == mode and r['cameras'] == n
                and r[phase].get(key) is not None]
        return float(np.median(vals)) if vals else None
    checks = {}
    top = max(counts)
    rss1, rss4 = med('multi', 1, 'overload', 'rss_mb'), med('multi', top, 'overload', 'rss_mb')
    rate_m4 = med('multi', top, 'overload', 'aggregate_output_rate_hz')
    rate_s4 = med('single', top, 'overload', 'aggregate_output_rate_hz')
    rss_s4 = med('single', top, 'overload', 'rss_mb')
    if rss1 and rss4:
        checks['rss_4cam_over_1cam'] = rss4 / rss1
        anon1 = med('multi', 1, 'overload', 'rss_anon_mb')
        anon4 = med('multi', top, 'overload', 'rss_anon_mb')
        if anon1 and anon4:     # private memory only (no shared-memory segments, no files)
            checks['rss_anon_4cam_over_1cam'] = anon4 / anon1
    if rate_m4 is not None and rate_s4:
        checks['aggregate_rate_multi4_over_single4'] = rate_m4 / rate_s4
        # Per round: each repeat's multi run against the single run next to it.
        pairs = [(r['overload']['aggregate_output_rate_hz'],
                  s['overload']['aggregate_output_rate_hz'])
                 for r in runs if r['mode'] == 'multi' and r['cameras'] == top
                 for s in runs if s['mode'] == 'single' and s['cameras'] == top
                 and s['repeat'] == r['repeat']]
        checks['aggregate_rate_ratio_per_repeat'] = [a / max(b, 1e-9) for a, b in pairs]
    if rss_s4 and rss4:
        checks['rss_single4_over_multi4'] = rss_s4 / rss4
    if rate_m4 is not None:
        checks['rate_spread_pct_multi4_overload'] = med('multi', top, 'overload',
                                                        'rate_spread_pct')
        checks['p99_over_bare_batch_multi4_nominal'] = med('multi', top, 'nominal',
                                                           'p99_over_bare_batch')
    result = {
        'machine': f'{platform.node()} {platform.machine()} {os.cpu_count()} cpus',
        'threads': THREADS.describe(),
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'backend': params.get('backend', 'torch'), 'device': params.get('device', 'cpu'),
        'backend_options': options, 'frame_size': [h, w], 'rate_hz': args.rate,
        'overload_rate_hz': args.overload_rate, 'seconds': args.seconds,
        'max_batch': args.max_batch, 'repeats': args.repeats,
        'bare_batch_ms': {str(k): v for k, v in bare.items()},
        'runs': runs, 'checks': checks,
        'targets': {'rss_4cam_over_1cam': '<= 1.3', 'aggregate_rate_multi4_over_single4': '>= 1.0',
                    'rate_spread_pct_multi4_overload': '<= 15',
                    'p99_over_bare_batch_multi4_nominal': '<= 2.5'},
    }
    print('\nbare segment_batch time: ' + ', '.join(
        f'{min(n, args.max_batch)} frames {v:.1f} ms' for n, v in bare.items()))
    head = (f'{"setup":>10s} {"phase":>9s} {"in Hz/cam":>9s} {"RSS MB":>8s} {"out Hz":>8s} '
            f'{"spread %":>8s} {"p99 ms":>8s} {"p99/bare":>8s}')
    print('\n' + head)
    for r in runs:
        for phase in ('nominal', 'overload'):
            ph = r[phase]

            def fmt(v, spec):
                return format(v, spec) if v is not None else '-'
            print(f'{r["mode"] + " x" + str(r["cameras"]) + " #" + str(r["repeat"] + 1):>10s} '
                  f'{phase:>9s} '
                  f'{ph["input_rate_hz"]:9.1f} {ph["rss_mb"]:8.0f} '
                  f'{ph["aggregate_output_rate_hz"]:8.2f} {fmt(ph["rate_spread_pct"], "8.1f")} '
                  f'{fmt(ph["e2e_ms_p99_worst_camera"], "8.0f")} '
                  f'{fmt(ph["p99_over_bare_batch"], "8.2f")}')
    if checks:
        targets = ', '.join(f'{k} {v}' for k, v in result['targets'].items())
        print(f'\nchecks (targets: {targets})')
        print('  (medians over the repeats)')
        for k, v in checks.items():
            if isinstance(v, list):
                print(f'  {k}: ' + ', '.join(f'{x:.2f}' for x in v))
            else:
                print(f'  {k}: {v:.2f}' if v is not None else f'  {k}: -')
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'\nwrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
