"""Split bags into shards (whole bags, time ranges of long bags), evaluate and merge them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
import os
from pathlib import Path
import time
from typing import Any, Sequence

import numpy as np

from .bagio import BagError, BagSource
from .evaluator import BagEvaluator, EvalConfig
from .matching import LabelDir
from .state import EvalState

# A shard reads labels this far (plus the stamp tolerance) beyond its time range, so frames at
# its edges find labels recorded just across the boundary.
SHARD_MARGIN_S = 2.0


@dataclass(frozen=True)
class Shard:
    """A bag, or the frames of a bag whose bag time is in ``[start_ns, stop_ns)``."""

    id: int                  # position in the run: bag order, then time
    bag_index: int
    path: str
    part: int = 0
    parts: int = 1
    start_ns: int | None = None
    stop_ns: int | None = None
    frames: int = 0          # frames expected from the bag's index (progress bar)
    samples: int = 0         # montage frames this shard contributes

    def describe(self) -> str:
        if self.parts == 1:
            return 'whole bag'
        a = 'start' if self.start_ns is None else f'{self.start_ns / 1e9:.3f}'
        b = 'end' if self.stop_ns is None else f'{self.stop_ns / 1e9:.3f}'
        return f'part {self.part + 1}/{self.parts}: {a} s to {b} s'


def plan_bag(path: str, bag_index: int, cfg: EvalConfig, shard_frames: int) -> list[Shard]:
    """One shard for the bag, or time ranges of about ``shard_frames`` frames each when the
    bag's index says it has more. Not split: with ``--limit`` (first N frames), labels
    matched by index (``--labels-dir`` without stamps) or a damaged bag read by scanning.
    A bag that cannot be opened is one shard: its worker reports why."""
    whole = [Shard(0, bag_index, str(path))]
    try:
        src = BagSource(Path(path)).open()
    except BagError:
        return whole
    try:
        frames = src.count(cfg.pred_topic or cfg.image_topic)
        whole = [Shard(0, bag_index, str(path), frames=frames)]
        span = src.time_range()
    finally:
        src.close()
    if shard_frames <= 0 or frames <= shard_frames or span is None or cfg.limit:
        return whole
    if cfg.labels_dir and LabelDir(cfg.labels_dir).mode == 'index':
        return whole
    k = math.ceil(frames / shard_frames)
    first, end = span
    bounds = [first + (end - first) * i // k for i in range(k + 1)]
    return [Shard(0, bag_index, str(path), i, k, None if i == 0 else bounds[i],
                  None if i == k - 1 else bounds[i + 1], frames * (i + 1) // k - frames * i // k)
            for i in range(k)]


def number(shards: Sequence[Shard], samples: int) -> list[Shard]:
    """Shards in run order with ids, and the montage frames spread over them."""
    shards = sorted(shards, key=lambda s: (s.bag_index, s.part))
    base, extra = divmod(samples, max(len(shards), 1))
    return [dataclasses.replace(s, id=i, samples=base + (i < extra))
            for i, s in enumerate(shards)]


def make_evaluator(cfg: EvalConfig, model: str = '', backend: str = 'torch', device: str = 'cpu',
                   label_set: str = '') -> BagEvaluator:
    """The evaluator ``pspnet-ros eval`` runs: the model from ``model`` (a card; default the
    shipped one), or with ``cfg.pred_topic`` only the class names of ``label_set`` (default
    the model card's)."""
    from ..core import ModelCard, default_card_path, get_label_set, Segmenter
    if cfg.pred_topic:
        ls = get_label_set(label_set or ModelCard.load(model or default_card_path()).label_set)
        return BagEvaluator(cfg, class_names=ls.classes, palette=ls.palette_array(),
                            ignore_index=ls.ignore_index)
    return BagEvaluator(cfg, segmenter=Segmenter(model or default_card_path(), backend=backend,
                                                 device=device))


class ShardWorker:
    """Evaluates shards one after another in one process, with the model loaded once (on Ray,
    one actor per worker)."""

    def __init__(self, cfg: EvalConfig, model: str = '', backend: str = 'torch',
                 device: str = 'cpu', label_set: str = '', threads: int = 0):
        if threads > 0:
            import torch
            torch.set_num_threads(threads)
        self.cfg = dataclasses.replace(cfg, progress=False, write_bag='')
        self.ev = make_evaluator(self.cfg, model, backend, device, label_set)

    def describe(self) -> dict:
        """What the report needs from the model and label set, and where this worker runs."""
        out = self.ev.describe()
        out['pid'] = os.getpid()
        out['node'] = _node_id()
        return out

    def frame_read(self, shard: Shard, frames: int) -> None:
        """Called after each frame of ``shard`` is read (``frames`` so far); a hook for
        subclasses."""

    def run(self, shard: Shard, progress: Any = None) -> dict:
        """Evaluate ``shard``: its bag entry (with ``_conf``) and evaluator state. ``progress``
        (a Ray actor handle with ``set(shard_id, frames)``) hears about frames read."""
        ev = self.ev
        ev.reset()
        ev.cfg.samples = shard.samples
        last = [0.0]

        def on_read(n: int) -> None:
            self.frame_read(shard, n)
            now = time.monotonic()
            if progress is not None and now - last[0] > 0.25:
                last[0] = now
                progress.set.remote(shard.id, n)

        ev.on_read = on_read
        margin = int(round((SHARD_MARGIN_S + self.cfg.stamp_tolerance) * 1e9))
        t0 = time.perf_counter()
        info = ev.run_bag(shard.path, shard.start_ns, shard.stop_ns, margin, shard.frames)
        wall = time.perf_counter() - t0
        if progress is not None:
            progress.set.remote(shard.id, info['frames_read'])
        return {'id': shard.id, 'info': info, 'state': ev.state, 'wall_s': wall,
                'pid': os.getpid(), 'node': _node_id()}


def _node_id() -> str:
    try:
        import ray
        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return ''


def merge(cfg: EvalConfig, shards: Sequence[Shard], results: dict[int, dict],
          failures: dict[int, str], num_classes: int) -> tuple[EvalState, list[dict]]:
    """One state and one report entry per bag from shard results, in bag order; a failed
    shard's reason becomes its bag's ``error``. Equal to evaluating the bags in turn."""
    st = EvalState.empty(num_classes)
    bags = []
    for bag_index, path in enumerate(cfg.bags):
        parts = [s for s in shards if s.bag_index == bag_index]
        infos = []
        errors = []
        for sh in parts:
            if sh.id in results:
                st.merge(results[sh.id]['state'], cfg.samples)
                infos.append(results[sh.id]['info'])
            else:
                where = '' if sh.parts == 1 else f' ({sh.describe()})'
                errors.append(f'evaluation of {path}{where} failed: '
                              f'{failures.get(sh.id, "no result")}')
        entry = {'path': str(path), 'storage': '', 'error': '', 'recovered': '',
                 'read_error': '', 'frames_read': 0, 'frames_scored': 0,
                 '_conf': np.zeros((num_classes, num_classes), np.int64)}
        for info in infos:
            for key in ('storage', 'error', 'recovered', 'read_error'):
                entry[key] = entry[key] or info[key]
            if info.get('count_mismatch'):
                entry['count_mismatch'] = info['count_mismatch']
            for key in ('frames_read', 'frames_scored', '_conf'):
                entry[key] = entry[key] + info[key]
        entry['error'] = '; '.join([e for e in [entry['error']] if e] + errors)
        bags.append(entry)
    st.settle_shard_labels()
    return st, bags
