"""``pspnet-ros eval --workers N``: bag shards evaluated by Ray actors, merged into one report."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import importlib.util
import os
from pathlib import Path
import sys
import time
from typing import Callable

from . import DEFAULT_SHARD_FRAMES
from .evaluator import EvalConfig
from .report import build_report, write_outputs
from .shards import merge, number, plan_bag, Shard, ShardWorker

INSTALL_HINT = ("pip install '.[ray]' in the pspnet_ros source folder, or pip install -r "
                'requirements-ray.txt')


class FleetError(RuntimeError):
    """The parallel run cannot start (Ray missing, no cluster, a worker cannot load the
    model); the message says what to do."""


@dataclass
class FleetConfig:
    """How ``eval`` runs on Ray; see docs/EVALUATION.md."""

    workers: int = 2
    ray_address: str = ''        # '' starts a local Ray instance; 'auto', 'HOST:PORT', 'ray://'
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    shard_frames: int = DEFAULT_SHARD_FRAMES
    attempts: int = 2            # per shard: the first try and one retry
    model: str = ''
    backend: str = 'torch'
    device: str = 'cpu'
    label_set: str = ''

    def validate(self) -> None:
        if self.workers < 1:
            raise ValueError(f'--workers must be >= 1, got {self.workers}')
        if self.cpus_per_worker <= 0:
            raise ValueError(f'--cpus-per-worker must be > 0, got {self.cpus_per_worker}')
        if self.gpus_per_worker < 0:
            raise ValueError(f'--gpus-per-worker must be >= 0, got {self.gpus_per_worker}')


def ray_available() -> bool:
    return importlib.util.find_spec('ray') is not None


class ProgressCounter:
    """Frames read per shard, set by workers, summed for the driver's progress bar."""

    def __init__(self):
        self.frames: dict[int, int] = {}

    def set(self, shard_id: int, frames: int) -> None:
        self.frames[shard_id] = frames

    def total(self) -> int:
        return sum(self.frames.values())


def _reason(exc: BaseException) -> str:
    """One line saying why a Ray call failed."""
    import ray.exceptions as rex
    if isinstance(exc, rex.RayTaskError) and exc.cause is not None:
        return f'{type(exc.cause).__name__}: {exc.cause}'.splitlines()[0]
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if 'creation task' in lines[0]:
        return lines[-1]
    if isinstance(exc, rex.RayActorError):
        return f'the worker process died (killed or crashed): {lines[0]}'
    return f'{type(exc).__name__}: {lines[0]}'


def _connect(fc: FleetConfig) -> bool:
    """Join ``fc.ray_address`` or start a local instance; True when this call started Ray
    (and so must shut it down)."""
    import ray
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, logging_level='warning', log_to_driver=True)
    try:
        if fc.ray_address:
            ray.init(address=fc.ray_address, **kw)
        else:
            need = fc.workers * fc.cpus_per_worker
            ray.init(num_cpus=max(os.cpu_count() or 1, int(need + 0.999)),
                     _node_ip_address='127.0.0.1', **kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FleetError(f'cannot join the Ray cluster at {fc.ray_address!r}: {exc}. Start one '
                         'with `ray start --head` (see docs/EVALUATION.md)' if fc.ray_address
                         else f'cannot start a local Ray instance: {exc}') from exc
    return True


def run_fleet(cfg: EvalConfig, fc: FleetConfig,
              on_progress: Callable[[int, list[int]], None] | None = None,
              worker: type[ShardWorker] = ShardWorker) -> dict:
    """Evaluate ``cfg.bags`` on ``fc.workers`` Ray actors (instances of ``worker``) and write
    the merged report to ``cfg.out``; returns it. ``on_progress(frames read, worker pids)`` is
    called while it runs. A shard whose worker dies or raises is retried once on a fresh
    worker, then reported in its bag's ``error`` and in ``report['fleet']``."""
    cfg.validate()
    fc.validate()
    if cfg.write_bag:
        raise ValueError('--write-bag writes one bag from one process; run it without '
                         '--workers/--ray-address')
    import ray
    t_start = time.perf_counter()
    started = _connect(fc)
    try:
        return _run(ray, cfg, fc, on_progress, t_start, worker)
    finally:
        if started:
            ray.shutdown()


def _run(ray, cfg: EvalConfig, fc: FleetConfig, on_progress, t_start: float,
         worker: type[ShardWorker]) -> dict:
    threads = max(1, int(fc.cpus_per_worker))
    device = 'cuda' if fc.gpus_per_worker > 0 and fc.device == 'cpu' else fc.device
    worker_cls = ray.remote(worker)
    worker_cfg = EvalConfig(**{**vars(cfg), 'progress': False, 'bags': list(cfg.bags)})

    def new_worker():
        return worker_cls.options(num_cpus=fc.cpus_per_worker,
                                  num_gpus=fc.gpus_per_worker).remote(
            worker_cfg, fc.model, fc.backend, device, fc.label_set, threads)

    # Plans, the progress counter and the workers (each loading the model) start together.
    planner = ray.remote(num_cpus=0)(plan_bag)
    plans = [planner.remote(str(b), i, worker_cfg, fc.shard_frames)
             for i, b in enumerate(cfg.bags)]
    progress = ray.remote(num_cpus=0)(ProgressCounter).remote()
    workers = [new_worker() for _ in range(fc.workers)]
    try:
        described = ray.get([w.describe.remote() for w in workers])
    except ray.exceptions.RayError as exc:
        raise FleetError(f'a Ray worker could not start: {_reason(exc)}') from exc
    shards = number([s for p in ray.get(plans) for s in p], cfg.samples)
    ray.get(progress.total.remote())
    d0 = described[0]
    pids = [d['pid'] for d in described]
    t_eval = time.perf_counter()

    bar = None
    if cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(s.frames for s in shards) or None, unit='frame', file=sys.stderr,
                   desc=f'{len(shards)} shards on {len(workers)} workers')
    queue: deque[Shard] = deque(shards)
    attempts = {s.id: 0 for s in shards}
    idle = list(workers)
    worker_pid = {id(w): d['pid'] for w, d in zip(workers, described)}
    inflight: dict = {}
    results: dict[int, dict] = {}
    failures: dict[int, str] = {}
    done_frames = 0
    try:
        while queue or inflight:
            while queue and idle:
                shard, w = queue.popleft(), idle.pop(0)
                attempts[shard.id] += 1
                inflight[w.run.remote(shard, progress)] = (w, shard)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
            for ref in ready:
                w, shard = inflight.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    reason = _reason(exc)
                    if isinstance(exc, ray.exceptions.RayActorError):
                        ray.kill(w)
                        pids = [p for p in pids if p != worker_pid.get(id(w))]
                        w = new_worker()
                    ray.get(progress.set.remote(shard.id, 0))
                    if attempts[shard.id] < fc.attempts:
                        print(f'warning: shard {shard.id} ({shard.path}, {shard.describe()}) '
                              f'failed, retrying: {reason}', file=sys.stderr)
                        queue.appendleft(shard)
                    else:
                        failures[shard.id] = reason
                else:
                    results[shard.id] = res
                    if res['pid'] not in pids:
                        pids.append(res['pid'])
                idle.append(w)
            total = ray.get(progress.total.remote())
            if bar is not None:
                bar.update(total - done_frames)
                bar.set_postfix(failed=len(failures), refresh=False)
            done_frames = total
            if on_progress is not None:
                on_progress(total, list(pids))
    finally:
        if bar is not None:
            bar.close()
        for w in idle + [w for w, _ in inflight.values()]:
            ray.kill(w)
    t_end = time.perf_counter()

    n = len(d0['class_names'])
    st, bags = merge(cfg, shards, results, failures, n)
    report = build_report(cfg, st, bags, t_end - t_start, d0, 0, len(workers))
    report['fleet'] = {
        'workers': len(workers), 'ray_address': fc.ray_address,
        'nodes': len({r['node'] for r in results.values()}),
        'cpus_per_worker': fc.cpus_per_worker, 'gpus_per_worker': fc.gpus_per_worker,
        'shard_frames': fc.shard_frames,
        'startup_s': t_eval - t_start, 'eval_s': t_end - t_eval,
        'shard_busy_s': sum(r['wall_s'] for r in results.values()),
        'retries': sum(a - 1 for a in attempts.values() if a > 1),
        'failed_shards': len(failures),
        'shards': [{'id': s.id, 'bag': s.path, 'range': s.describe(),
                    'frames': results[s.id]['info']['frames_read'] if s.id in results else 0,
                    'attempts': attempts[s.id],
                    'status': 'done' if s.id in results else 'failed',
                    'error': failures.get(s.id, ''),
                    'node': results[s.id]['node'] if s.id in results else '',
                    'wall_s': results[s.id]['wall_s'] if s.id in results else None}
                   for s in shards],
    }
    write_outputs(report, Path(cfg.out), st.timings, st.samples, d0['palette'])
    return report
