"""Node parameters turned into one validated configuration object (ROS-free)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import os
from typing import Any, Callable

from ..core.backends import applicable_options, parse_option_value
from ..core.card import check_input_size
from ..core.segmenter import check_region, Region
from ..core.threads import check_affinity, thread_count
from .cameras import check_camera_names
from .parameters import CAMERA_OVERRIDES, defaults


def parse_regions(specs: list[str]) -> dict[str, Region]:
    """Parse ``["name:x0,y0,x1,y1", ...]`` (fractions of width/height) into a dict."""
    regions: dict[str, Region] = {}
    for spec in specs:
        if not spec:
            continue
        name, sep, box = spec.partition(':')
        try:
            vals = tuple(float(v) for v in box.split(','))
        except ValueError:
            vals = ()
        if not sep or not name or len(vals) != 4:
            raise ValueError(f'occupancy region {spec!r} must look like "ahead:0.3,0.5,0.7,1.0"')
        try:
            check_region(vals)
        except ValueError as exc:
            raise ValueError(f'occupancy region {spec!r}: {exc}') from None
        if name in regions:
            raise ValueError(f'occupancy region name {name!r} appears twice')
        regions[name] = vals
    return regions


def parse_options(specs: list[str]) -> dict:
    """Parse ``["channels_last=true", "threads=2"]`` into typed backend options."""
    out = {}
    for spec in specs:
        if not spec:
            continue
        key, sep, raw = spec.partition('=')
        if not sep or not key.strip():
            raise ValueError(f'backend option {spec!r} must look like "channels_last=true"')
        # A declared option gets its type and range (fuse_bn=no is False, threads=-5 an
        # error naming it); an undeclared name is reported by options_for.
        out[key.strip()] = parse_option_value(raw, key.strip())
    return out


def _check_transport(value, where: str = '') -> str:
    if value not in ('raw', 'compressed'):
        raise ValueError(f'{where}input_transport must be raw or compressed, got {value!r}')
    return value


def _check_qos(value, where: str = '') -> str:
    if value not in ('sensor_data', 'reliable'):
        raise ValueError(f'{where}image_qos must be sensor_data or reliable, got {value!r}')
    return value


@dataclass(frozen=True)
class CameraConfig:
    """One camera's input settings. ``name`` is empty for the single camera of a node without
    ``cameras`` (topics ``image``, ``camera_info``; outputs ``~/mask`` ...); otherwise its
    topics are ``<name>/image`` ... and its outputs ``~/<name>/mask`` ..."""

    name: str = ''
    input_transport: str = 'raw'
    image_qos: str = 'sensor_data'
    qos_depth: int = 2
    use_camera_info: bool = False

    @property
    def label(self) -> str:
        """The camera's name in logs and diagnostics."""
        return self.name or 'image'

    def topic(self, base: str) -> str:
        """An input topic of this camera (``image``, ``image/compressed``, ``camera_info``)."""
        return f'{self.name}/{base}' if self.name else base

    def output(self, base: str) -> str:
        """An output topic of this camera (``~/mask`` or ``~/<name>/mask``)."""
        return f'~/{self.name}/{base}' if self.name else f'~/{base}'


def cameras_from_parameters(p: dict) -> tuple[CameraConfig, ...]:
    """The camera list from ``cameras`` and the ``<camera>.<parameter>`` overrides in ``p``
    (a missing or None override takes the node-wide value)."""
    names = check_camera_names([n for n in (p.get('cameras') or [])])
    clash = sorted(set(names) & set(p))
    if clash:
        raise ValueError(f'camera name {clash[0]!r} is also a node parameter; rename the camera')
    out = []
    for name in names or ('',):
        values = {}
        for key in CAMERA_OVERRIDES:
            v = p.get(f'{name}.{key}') if name else None
            values[key] = p[key] if v is None else v
        where = f'{name}.' if name else ''
        out.append(CameraConfig(
            name=name, input_transport=_check_transport(values['input_transport'], where),
            image_qos=_check_qos(values['image_qos'], where),
            qos_depth=int(values['qos_depth']), use_camera_info=bool(values['use_camera_info'])))
        if not 1 <= out[-1].qos_depth <= 100:
            raise ValueError(f'{where}qos_depth must be 1..100, got {out[-1].qos_depth}')
    return tuple(out)


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node reads from its parameters, validated once. Its defaults are the
    parameter schema's (``parameters.SCHEMA``): build one with ``from_parameters``. The
    cameras' transport settings (``input_transport``, ``image_qos``, ``qos_depth``,
    ``use_camera_info``) are in ``cameras``, node-wide values and overrides resolved."""

    model: str
    backend: str
    device: str
    auto_budget_s: float
    fallback_backends: tuple[str, ...]
    backend_options: dict
    input_size: tuple[int, int] | None
    resize_mode: str | None
    test_time_flip: bool
    max_image_pixels: int
    num_threads: int
    cpu_affinity: tuple[int, ...]
    publish_color_mask: bool
    publish_overlay: bool
    publish_confidence: bool
    overlay_alpha: float
    regions: dict[str, Region]
    diagnostics_period: float
    log_throttle_sec: float
    starvation_warn_sec: float
    diagnostics_window_s: float
    cameras: tuple[CameraConfig, ...]
    max_batch: int
    sync_tolerance: float
    sync_wait: float
    inference_workers: int

    @property
    def multi_camera(self) -> bool:
        """Whether cameras are named (outputs under ``~/<camera>/``)."""
        return bool(self.cameras[0].name)

    @classmethod
    def from_parameters(cls, p: dict) -> 'NodeConfig':
        cfg = cls._from_parameters(p)
        cfg.options_for(cfg.backend)   # options no backend knows (typos) are an error
        return cfg

    @classmethod
    def _from_parameters(cls, values: dict) -> 'NodeConfig':
        p = {**defaults(), **values}     # a parameter left out takes the schema's default
        _check_transport(p['input_transport'])
        _check_qos(p['image_qos'])
        cameras = cameras_from_parameters(p)
        max_batch = int(p['max_batch'])
        if not 1 <= max_batch <= 64:
            raise ValueError(f'max_batch must be 1..64, got {max_batch}')
        workers = int(p['inference_workers'])
        if not 0 <= workers <= 64:
            raise ValueError(f'inference_workers must be 0..64 (0 = auto), got {workers}')
        sync_tolerance = float(p['sync_tolerance'])
        sync_wait = float(p['sync_wait'])
        if sync_tolerance < 0 or sync_wait < 0:
            raise ValueError(f'sync_tolerance ({sync_tolerance}) and sync_wait ({sync_wait}) '
                             'must be >= 0 seconds')
        size = list(p['input_size'] or [0, 0])
        if size != [0, 0]:
            check_input_size(size, 'input_size ([0, 0] = the model card value)')
        if p['resize_mode'] not in ('', 'stretch', 'letterbox'):
            raise ValueError(f'resize_mode must be stretch, letterbox or empty, got '
                             f'{p["resize_mode"]!r}')
        return cls(
            model=p['model'], backend=p['backend'], device=p['device'],
            auto_budget_s=float(p['auto_budget_s']),
            fallback_backends=tuple(b.strip() for b in p['fallback_backends'].split(',')
                                    if b.strip()),
            backend_options=parse_options(list(p['backend_options'] or [])),
            input_size=None if size == [0, 0] else (int(size[0]), int(size[1])),
            resize_mode=p['resize_mode'] or None,
            test_time_flip=bool(p['test_time_flip']),
            max_image_pixels=int(p['max_image_pixels']),
            num_threads=int(p['num_threads']),
            cpu_affinity=check_affinity(p['cpu_affinity'] or ()),
            publish_color_mask=bool(p['publish_color_mask']),
            publish_overlay=bool(p['publish_overlay']),
            publish_confidence=bool(p['publish_confidence']),
            overlay_alpha=float(p['overlay_alpha']),
            regions=parse_regions(list(p['occupancy_regions'] or [])),
            diagnostics_period=float(p['diagnostics_period']),
            log_throttle_sec=float(p['log_throttle_sec']),
            starvation_warn_sec=float(p['starvation_warn_sec']),
            diagnostics_window_s=float(p['diagnostics_window_s']),
            cameras=cameras, max_batch=max_batch, sync_tolerance=sync_tolerance,
            sync_wait=sync_wait, inference_workers=workers)

    def updated(self, changes: dict) -> 'NodeConfig':
        """A copy with run-time (cosmetic) parameter changes applied."""
        kw = {}
        for name, value in changes.items():
            if name == 'occupancy_regions':
                kw['regions'] = parse_regions(list(value or []))
            elif name in {f.name for f in dataclasses.fields(self)}:
                kw[name] = value
        return dataclasses.replace(self, **kw)

    @property
    def threads(self) -> int:
        """Inference threads: ``num_threads`` capped at the usable CPUs (0 = all of them)."""
        return thread_count(self.num_threads)

    def options_for(self, backend: str) -> tuple[dict, str]:
        """``backend_options`` that ``backend`` takes, and a note naming those dropped
        (options of other backends); raises ValueError for options no backend knows."""
        try:
            return applicable_options(backend, self.backend_options)
        except Exception as exc:
            raise ValueError(str(exc)) from None

    def _segmenter(self, backend: str, fallback: bool = False):
        """The configured backend on the configured device with its options; a fallback
        runs on the CPU (the default Edge TPU for edgetpu) without backend options. Every
        backend gets the thread count unless its options set one."""
        from ..core import Segmenter
        opts = {}
        device = self.device
        if fallback:
            device = '' if backend == 'edgetpu' else 'cpu'
        elif backend == self.backend:
            opts, _ = self.options_for(backend)
        for key in ('threads', 'num_threads'):
            if backend == 'auto' or key == ('threads' if backend == 'torch' else 'num_threads'):
                opts.setdefault(key, self.threads)
        return Segmenter(self.card_for(backend), backend=backend, device=device,
                         input_size=self.input_size, resize_mode=self.resize_mode,
                         max_pixels=self.max_image_pixels, backend_options=opts,
                         test_time_flip=self.test_time_flip)

    def card_for(self, backend: str):
        """The model card ``backend`` runs: ``model``; with ``model`` empty, the shipped model,
        or for onnxruntime, tflite and edgetpu its shipped export (the ONNX file, the int8
        TFLite file, an Edge TPU compilation), as ``auto`` picks them. A missing export is a
        BackendError that says how to make one."""
        from ..core import default_card_path, ModelCard
        from ..core.backends.base import export_card
        if self.model:
            return self.model
        card = ModelCard.load(default_card_path())
        return export_card(card, backend).path if backend != 'auto' else card.path

    @staticmethod
    def _same(name: str, failed: str, failed_device: str) -> bool:
        """Whether fallback ``name`` would just repeat the backend that failed (a torch
        fallback after torch on CUDA is the CPU path, a different one)."""
        return name == failed and (failed_device == 'cpu' or name == 'edgetpu')

    def auto_choice(self, cache_dir: str | os.PathLike | None = None,
                    stop: Callable[[], bool] | None = None) -> tuple[Any, str]:
        """For ``backend: auto``, the measured (or cached) choice (``autoselect.Selection``)
        and ''; else ``(None, why the fixed chain or the named backend runs)``. The choice is
        made only for ``auto`` without ``backend_options`` (explicit options are never
        overridden) and with ``auto_budget_s`` > 0. ``stop()`` true ends the measuring early
        (a signal during the configure)."""
        if self.backend != 'auto':
            return None, ''
        if self.auto_budget_s <= 0:
            return None, 'auto_budget_s is 0: the fixed chain, no measuring'
        if self.backend_options:
            return None, 'backend_options are given: the fixed chain with them, no measuring'
        from ..core import ModelCard
        from ..core.backends.autoselect import select
        card = ModelCard.load(self.card_for('auto'))
        sel = select(card, self.device, self.input_size, self.auto_budget_s,
                     cache_dir=cache_dir, stop=stop)
        if sel is None:
            return None, 'no candidate could be measured: the fixed chain'
        return sel, ''

    def _chosen(self, sel):
        """The Segmenter of a measured choice, with the configured thread count unless the
        choice sets one."""
        from ..core import Segmenter
        opts = dict(sel.options)
        if sel.backend != 'edgetpu':
            opts.setdefault('threads' if sel.backend == 'torch' else 'num_threads', self.threads)
        return Segmenter(sel.card_path, backend=sel.backend, device=self.device,
                         input_size=self.input_size, resize_mode=self.resize_mode,
                         max_pixels=self.max_image_pixels, backend_options=opts,
                         test_time_flip=self.test_time_flip)

    def build_segmenter(self, choice: Any = None) -> tuple[Any, str]:
        """The Segmenter for the configured backend (for ``auto`` with a measured
        ``choice``, the chosen candidate), else the first fallback that loads.

        Returns ``(segmenter, note)``; ``note`` is empty unless a fallback was taken, and then
        says why (for the log and diagnostics).
        """
        if choice is not None:
            try:
                return self._chosen(choice), ''
            except Exception as exc:   # measured a moment ago, but it may fail to load again
                note = (f'auto: the chosen {choice.label} did not load ({exc}); the fixed '
                        'chain instead')
                seg, fb = self.build_segmenter()
                return seg, note + (f'; {fb}' if fb else '')
        try:
            return self._segmenter(self.backend), ''
        except Exception as exc:
            if not self.fallback_backends:
                raise
            return self._fallback(self.backend, exc)

    def fallback_segmenter(self, failed: str, exc: Exception, failed_device: str = 'cpu'):
        """After ``failed`` (on ``failed_device``) broke at run time, the next backend in the
        chain (or None)."""
        chain = [b for b in self.fallback_backends if not self._same(b, failed, failed_device)]
        if not chain:
            return None, ''
        return self._fallback(failed, exc, failed_device)

    def _fallback(self, failed: str, exc: Exception, failed_device: str | None = None):
        failed_device = self.device if failed_device is None else failed_device
        reasons = [f'{failed}: {exc}']
        for name in self.fallback_backends:
            if self._same(name, failed, failed_device):
                continue
            try:
                seg = self._segmenter(name, fallback=True)
            except Exception as err:
                reasons.append(f'{name}: {err}')
                continue
            why = '; '.join(reasons)
            return seg, (f'backend {failed!r} unusable, fell back to {name!r} on '
                         f'{seg.backend.device} ({why})')
        raise RuntimeError('no backend could be loaded: ' + '; '.join(reasons))


def concurrent_safe(seg) -> bool:
    """Whether batches may run on ``seg`` from several threads at once: torch on CPU (one
    module, no per-call state). TFLite interpreters and CUDA graphs are not."""
    return seg is not None and seg.backend.name == 'torch' and seg.backend.device == 'cpu'


def side_by_side(seg) -> bool:
    """Whether several workers may run batches at once: on one shared module
    (``concurrent_safe``) or each on a backend of its own (TFLite on the CPU: an interpreter
    per worker, ``Segmenter.replica``)."""
    return concurrent_safe(seg) or (seg is not None and seg.backend.name == 'tflite')


def plan_workers(cfg: NodeConfig, seg, threads: int) -> tuple[int, int, str]:
    """Inference workers for ``cfg`` on ``seg`` with ``threads`` CPU threads: (workers,
    CPU threads per worker (0 = leave the process's), note for the log).

    On 2 cores, two workers of one thread each ran 1.25-1.5x the frames of one worker of two
    threads on torch, and 4 cameras 1.21-1.24x on the int8 TFLite model (docs/RESULTS.md,
    "Multi-camera"): no barriers between the threads of one run, and no idle core while Python
    prepares or publishes a frame. A camera is never in two workers
    at once (its outputs keep the order of its frames), so there are at most as many workers
    as cameras; synchronised sets run whole, one at a time.
    """
    cams, n = len(cfg.cameras), cfg.inference_workers
    if n == 0:
        n = (min(cams, threads) if cams > 1 and cfg.sync_tolerance == 0 and side_by_side(seg)
             else 1)
        return (n, max(1, threads // n), '') if n > 1 else (1, 0, '')
    if n == 1:
        return 1, 0, ''
    if cfg.sync_tolerance > 0:
        return 1, 0, (f'inference_workers {n}: 1 worker, synchronised sets (sync_tolerance > 0) '
                      'run one at a time')
    if not side_by_side(seg):
        return 1, 0, (f'inference_workers {n}: 1 worker, backend {seg.backend.name} on '
                      f'{seg.backend.device} runs one batch at a time (only torch and TFLite on '
                      'CPU run batches side by side)')
    note = ''
    if n > cams:
        note = (f'inference_workers {n}: {cams} worker{"s" if cams > 1 else ""}, a camera is '
                'never in two workers at once')
        n = cams
    if n == 1:
        return 1, 0, note
    return n, max(1, threads // n), note
