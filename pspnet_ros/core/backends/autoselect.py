"""``auto`` by measurement: time the backends that run here, keep the fastest accurate one.

A ranking measured on one CPU does not hold on the next (channels_last was 2x faster on one
VM and 0.91x on another), so the choice is made on the machine: each candidate that loads
runs a few frames at the configured input size within a time budget, the fastest whose
card accuracy is within ``tolerance`` of the float model's wins, and the result is cached
under a key of the CPU (model and flags), the model files' hashes and the runtime versions,
so the next start reuses it at once. An explicit backend is never replaced: this is only for
``auto``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from ..card import ModelCard
from ..threads import thread_count

LOG = logging.getLogger('pspnet_ros.backends')
RUNTIMES = ('torch', 'onnxruntime', 'ai-edge-litert', 'tflite-runtime', 'numpy')
CACHE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: a backend, its options and the card it runs."""

    backend: str
    card: ModelCard
    options: tuple[tuple[str, object], ...] = ()

    @property
    def label(self) -> str:
        """``torch``, ``torch channels_last=False``, ``tflite num_threads=2`` ..."""
        return ' '.join([self.backend] + [f'{k}={v}' for k, v in self.options])

    @property
    def accuracy(self) -> float | None:
        """The card's validation mIoU, if it states one."""
        val = (self.card.metrics or {}).get('val') or {}
        miou = val.get('miou') if isinstance(val, dict) else None
        return float(miou) if isinstance(miou, (int, float)) else None


@dataclass
class Measurement:
    """What measuring a candidate gave: its fastest seconds per frame (None: not measured, with
    ``note`` saying why) and the card accuracy."""

    label: str
    seconds: float | None
    accuracy: float | None
    note: str = ''


@dataclass
class Selection:
    """The choice: the backend, options and card to run, every candidate's measurement, and
    whether it came from the cache."""

    backend: str
    options: dict
    card_path: str
    label: str
    measurements: list[Measurement] = field(default_factory=list)
    from_cache: bool = False
    key: str = ''

    def describe(self) -> str:
        """One line for the log and diagnostics."""
        times = ', '.join(f'{m.label} {m.seconds * 1000:.1f} ms' if m.seconds is not None
                          else f'{m.label} ({m.note})' for m in self.measurements)
        return f'auto chose {self.label} ({self.source}: {times})'

    @property
    def source(self) -> str:
        """``measured`` (this start) or ``cached`` (an earlier start on this machine)."""
        return 'cached' if self.from_cache else 'measured'

    def values(self) -> dict[str, str]:
        """Diagnostics values: ``backend_choice``, the chosen candidate, and
        ``auto.<candidate>`` with its fastest time per frame (or why it has none)."""
        out = {'backend_choice': self.source, 'auto.chosen': self.label}
        for m in self.measurements:
            out[f'auto.{m.label}'] = (f'{m.seconds * 1000:.1f} ms' if m.seconds is not None
                                      else m.note)
        return out


Skipped = list[tuple[str, str]]


def candidates(card: ModelCard, device: str = 'cpu', thread_options: Iterable[int] = (1, 2, 0)
               ) -> tuple[list[Candidate], Skipped]:
    """The candidates for ``card`` on ``device`` and the ``(backend, reason)`` of those left
    out (runtime not installed, no export beside the card). Nothing is imported or loaded:
    runtimes are looked up, exports found by name."""
    from .base import BackendError, export_card
    out: list[Candidate] = []
    skipped: Skipped = []
    if card.format == 'safetensors' or str(card.weights).endswith(('.pth', '.pt')):
        for channels_last in (False, True):
            out.append(Candidate('torch', card, (('channels_last', channels_last),)))
    if device.startswith('cuda'):
        return out, skipped
    runtimes = {'edgetpu': ('ai_edge_litert', 'tflite_runtime'), 'onnxruntime': ('onnxruntime',),
                'tflite': ('ai_edge_litert', 'tflite_runtime')}
    for backend, modules in runtimes.items():
        if not any(importlib.util.find_spec(m) for m in modules):
            skipped.append((backend, f'{"/".join(modules)} not installed'))
            continue
        try:
            member = export_card(card, backend)
        except BackendError as exc:
            skipped.append((backend, str(exc).split(';')[0]))
            continue
        if backend == 'edgetpu':     # one device, no CPU threads to choose
            out.append(Candidate(backend, member))
            continue
        counts = sorted({thread_count(t) for t in thread_options})
        for n in counts:
            out.append(Candidate(backend, member, (('num_threads', n),)))
    return out, skipped


def choose(measured: Sequence[Measurement], reference: float | None,
           tolerance: float = 0.01) -> Measurement | None:
    """The fastest measured candidate whose accuracy is at least ``reference - tolerance``
    (a candidate without a stated accuracy counts as accurate: the float exports carry the
    float model's); the first listed wins a tie. None when nothing was measured."""
    eligible = [m for m in measured if m.seconds is not None
                and (reference is None or m.accuracy is None
                     or m.accuracy >= reference - tolerance - 1e-12)]
    return min(eligible, key=lambda m: m.seconds) if eligible else None


def _frame_for(card: ModelCard, input_size: tuple[int, int], backend) -> np.ndarray:
    """A fixed random frame, preprocessed for ``card`` at ``input_size`` (a batch of one) as
    the ``Segmenter`` gives it to ``backend`` (a quantised input comes quantised)."""
    from ..preprocess import prepare, prepare_by_table
    rgb = np.random.default_rng(0).integers(0, 256, (*input_size, 3), np.uint8)
    table_of = getattr(backend, 'input_table', None)      # tests time plain fakes
    table = table_of() if table_of else None
    if table is not None:
        return prepare_by_table(rgb, input_size, table, card.resize_mode, card.input_layout,
                                card.mean)[0]
    batch, _ = prepare(rgb, input_size, card.mean, card.std, card.resize_mode,
                       card.input_layout, card.input_dtype)
    return batch


def measure(cands: Sequence[Candidate], input_size: tuple[int, int], budget_s: float,
            device: str = 'cpu', runs: int = 5,
            clock: Callable[[], float] = time.perf_counter,
            build: Callable | None = None,
            stop: Callable[[], bool] | None = None) -> list[Measurement]:
    """Time each candidate (one warm-up run, then up to ``runs`` timed runs) until
    ``budget_s`` seconds are spent or ``stop()`` is true (the process is ending); the rest
    are listed as not measured. ``build`` makes a backend (``create_backend`` by default),
    ``clock`` reads the time (tests pass fakes)."""
    if build is None:
        from .base import create_backend as build
    start = clock()
    out: list[Measurement] = []
    for cand in cands:
        if stop is not None and stop():
            out.append(Measurement(cand.label, None, cand.accuracy, 'not measured: stopped'))
            continue
        if clock() - start >= budget_s:
            out.append(Measurement(cand.label, None, cand.accuracy,
                                   f'not measured: budget of {budget_s:g} s spent'))
            continue
        try:
            backend = build(cand.backend, cand.card, device, **dict(cand.options))
            batch = _frame_for(cand.card, input_size, backend)
            backend.run(batch)
            times = []
            for _ in range(runs):
                t0 = clock()
                backend.run(batch)
                times.append(clock() - t0)
                if clock() - start >= budget_s:
                    break
        except Exception as exc:   # a candidate that cannot run here is skipped, not fatal
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            out.append(Measurement(cand.label, None, cand.accuracy, f'failed: {reason}'))
            continue
        # The fastest run, not the median: another process on the cores for part of the
        # measuring (a robot's CPU is shared) must not decide the thread count that is then
        # cached (measured 2026-12-07: beside a 2 Hz soak the median chose 1 thread, 33 ms,
        # over 2 threads, which run 20 ms on the same CPU when it is free).
        out.append(Measurement(cand.label, min(times), cand.accuracy))
    return out


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _cpu() -> dict:
    """The cache key's CPU: model name and every feature flag."""
    from ..machine import cpu_info
    info = cpu_info()
    return {'model': info['model'], 'flags': ' '.join(info['flags'])}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ''


def cache_key(cands: Sequence[Candidate], input_size: tuple[int, int], device: str,
              tolerance: float) -> str:
    """A hash of what the measurement depends on: the CPU (model, flags, usable CPUs), the
    candidates with their model files' SHA-256, the runtime versions, the input size, the
    device and the tolerance."""
    files = sorted({str(c.card.weights_path) for c in cands} | {
        str(c.card.path) for c in cands if c.card.path is not None})
    parts = {'version': CACHE_VERSION, 'cpu': _cpu(), 'cpus': thread_count(0),
             'candidates': [c.label + ' @ ' + c.card.name for c in cands],
             'files': {Path(f).name: _file_hash(Path(f)) for f in files if Path(f).is_file()},
             'runtimes': {r: _version(r) for r in RUNTIMES}, 'input_size': list(input_size),
             'device': device, 'tolerance': tolerance}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """``$ROS_HOME/pspnet_ros/auto_backend`` when ``ROS_HOME`` is set, else the user cache
    (``$XDG_CACHE_HOME`` or ``~/.cache``) ``/pspnet_ros/auto_backend``."""
    if os.environ.get('ROS_HOME'):
        return Path(os.environ['ROS_HOME']) / 'pspnet_ros' / 'auto_backend'
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'pspnet_ros' / 'auto_backend'


def select(card: ModelCard, device: str = 'cpu', input_size: tuple[int, int] | None = None,
           budget_s: float = 10.0, tolerance: float = 0.01,
           cache_dir: str | os.PathLike | None = None, **measure_kw) -> Selection | None:
    """Measure (or read from the cache) and choose. None when ``budget_s`` is 0 (no
    measuring: the caller keeps its fallback chain) or when no candidate could run."""
    if budget_s <= 0:
        return None
    size = tuple(input_size or card.input_size)
    cands, skipped = candidates(card, device)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(cands, size, device, tolerance)
    path = folder / f'{key}.json'
    try:
        cached = json.loads(path.read_text())
        if cached.get('key') == key:
            measurements = [Measurement(**m) for m in cached['measurements']]
            sel = Selection(**{**cached, 'measurements': measurements})
            sel.from_cache = True
            return sel
    except (OSError, ValueError, TypeError, KeyError):
        pass
    measured = measure(cands, size, budget_s, device, **measure_kw)
    stop = measure_kw.get('stop')
    if stop is not None and stop():
        return None         # cut short: neither a choice nor something to cache
    measured += [Measurement(name, None, None, f'skipped: {why}') for name, why in skipped]
    reference = Candidate(card.format, card).accuracy     # the card asked for: the float model
    best = choose(measured, reference, tolerance)
    if best is None:
        return None
    chosen = next(c for c in cands if c.label == best.label)
    sel = Selection(chosen.backend, dict(chosen.options), str(chosen.card.path or ''),
                    chosen.label, measured, False, key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a node starting at the same moment reads the whole file
        # or none.
        tmp = path.with_name(f'.{path.name}.{os.getpid()}')
        tmp.write_text(json.dumps(asdict(sel), indent=1) + '\n')
        os.replace(tmp, path)
    except OSError as exc:
        LOG.warning('backend auto: could not cache the choice in %s (%s); it is measured '
                    'again at the next start', path, exc)
    return sel
