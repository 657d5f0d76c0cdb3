#!/usr/bin/env python3
"""Benchmark eval on Ray: CamVid bags at 1 and 2 workers vs one process, with and without model."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pspnet_ros.core.threads import configure_threads  # noqa: E402

configure_threads()     # passive OpenMP waiting, as the CLI does, before torch/numpy load

from bench_eval import build_bag, camvid_pairs, IMAGE, LABELS, PRED  # noqa: E402
from pspnet_ros.evaluation.evaluator import EvalConfig  # noqa: E402
from pspnet_ros.evaluation.shards import make_evaluator  # noqa: E402


def config(bags: list[Path], out: Path, mode: str) -> EvalConfig:
    return EvalConfig(bags=[str(b) for b in bags], label_topic=LABELS, out=str(out),
                      progress=False, **({'pred_topic': PRED} if mode == 'pred'
                                         else {'image_topic': IMAGE}))


def sequential(bags, out, mode, threads, model) -> dict:
    import torch
    torch.set_num_threads(threads)
    ev = make_evaluator(config(bags, out, mode), model, label_set='camvid')
    t0 = time.perf_counter()
    infos = [ev.run_bag(str(b)) for b in bags]
    eval_s = time.perf_counter() - t0
    report = ev.report(infos, eval_s)
    return {'eval_s': eval_s, 'wall_s': eval_s, 'startup_s': 0.0,
            'frames': report['frames']['read'], 'confusion': report['confusion']}


def on_ray(bags, out, mode, workers, model) -> dict:
    from pspnet_ros.evaluation.fleet import FleetConfig, run_fleet
    t0 = time.perf_counter()
    report = run_fleet(config(bags, out, mode),
                       FleetConfig(workers=workers, model=model, label_set='camvid'))
    fl = report['fleet']
    return {'eval_s': fl['eval_s'], 'wall_s': time.perf_counter() - t0,
            'startup_s': fl['startup_s'], 'frames': report['frames']['read'],
            'confusion': report['confusion'], 'shard_busy_s': fl['shard_busy_s']}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--bags', type=int, default=8)
    ap.add_argument('--frames', type=int, default=50, help='frames per bag (default 50)')
    ap.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--modes', nargs='+', choices=('pred', 'model'), default=['pred', 'model'])
    ap.add_argument('--model', default='', help='model card (default: the shipped one)')
    ap.add_argument('--json', default='bench_eval_scale.json', help='output JSON file')
    args, pairs = camvid_pairs(ap)
    if pairs is None:
        return 2
    import ray
    cpus = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bags = [Path(tmp) / f'drive{i}' for i in range(args.bags)]
        for i, b in enumerate(bags):
            build_bag(b, pairs, args.frames, first=i * args.frames,
                      period_ns=100_000_000, images=True)
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level='warning',
                 _node_ip_address='127.0.0.1')
        ray_start = time.perf_counter() - t0
        try:
            for mode in args.modes:
                runs = [('one process, 1 thread', 0, lambda: sequential(
                    bags, Path(tmp) / 'o', mode, 1, args.model)),
                    (f'one process, {cpus} threads', 0, lambda: sequential(
                        bags, Path(tmp) / 'o', mode, cpus, args.model))]
                runs += [(f'Ray, {w} worker(s)', w, lambda w=w: on_ray(
                    bags, Path(tmp) / 'o', mode, w, args.model)) for w in args.workers]
                results = []
                for name, w, fn in runs:
                    r = fn()
                    r.update(mode=mode, run=name, workers=w)
                    results.append(r)
                    print(f'{mode:5s} {name:24s} eval {r["eval_s"]:7.2f} s  '
                          f'{r["frames"] / r["eval_s"]:7.1f} frames/s', flush=True)
                base1 = results[0]
                ray1 = next((r for r in results if r['workers'] == 1), None)
                for r in results:
                    # The model-free results never depend on the thread count; with the model,
                    # workers (1 thread each) compare with the 1-thread process.
                    r['equal_to_one_process'] = r['confusion'] == base1['confusion']
                for r in results:
                    del r['confusion']
                    r['frames_per_s'] = r['frames'] / r['eval_s']
                    r['speedup_vs_one_process_all_threads'] = results[1]['eval_s'] / r['eval_s']
                    r['speedup_vs_ray_1_worker'] = ray1['eval_s'] / r['eval_s'] if ray1 else None
                if ray1:
                    ray1['ray_overhead_ms_per_frame'] = \
                        1e3 * (ray1['eval_s'] - base1['eval_s']) / base1['frames']
                rows += results
        finally:
            ray.shutdown()
    print(f'\n{args.bags} bags x {args.frames} CamVid frames, {cpus} CPUs, Ray {ray.__version__} '
          f'(local instance started in {ray_start:.1f} s)\n')
    print('| mode | run | eval s | frames/s | speedup vs 1 process | speedup vs Ray 1 worker '
          '| worker start s | equal |')
    print('|---|---|---:|---:|---:|---:|---:|---|')
    for r in rows:
        sp = r['speedup_vs_ray_1_worker']
        print(f'| {r["mode"]} | {r["run"]} | {r["eval_s"]:.2f} | {r["frames_per_s"]:.1f} | '
              f'{r["speedup_vs_one_process_all_threads"]:.2f}x | '
              f'{"" if sp is None else f"{sp:.2f}x"} | {r["startup_s"]:.1f} | '
              f'{"yes" if r["equal_to_one_process"] else "NO"} |')
    for r in rows:
        if 'ray_overhead_ms_per_frame' in r:
            print(f'{r["mode"]}: Ray adds {r["ray_overhead_ms_per_frame"]:.2f} ms per frame '
                  '(1 worker vs one 1-thread process)')
    Path(args.json).write_text(json.dumps({
        'bags': args.bags, 'frames_per_bag': args.frames, 'cpus': cpus,
        'ray_version': ray.__version__, 'ray_start_s': ray_start,
        'machine': platform.platform(), 'python': platform.python_version(), 'rows': rows},
        indent=1) + '\n')
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
