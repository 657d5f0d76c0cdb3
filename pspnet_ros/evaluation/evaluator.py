"""Replay bags through the Segmenter (or read recorded predictions) and score them."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import datetime
from pathlib import Path
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import cv2
import numpy as np

from ..core.image import DEFAULT_MAX_PIXELS, ImageError, read_label
from ..core.metrics import confusion_matrix, scores
from ..core.occupancy_msg import encode_occupancy
from ..core.rosimage import (compressed_to_labels, compressed_to_rgb, image_to_labels,
                             image_to_rgb)
from . import report as rep
from .bagio import BagError, BagSource, COMPRESSED, IMAGE, IMAGE_TYPES, PredictionWriter, \
    stamp_ns, typestore
from .matching import LabelDir, StampMatcher

MODEL_STAGES = ('convert', 'preprocess', 'inference', 'postprocess', 'total')
SAMPLE_WIDTH = 320


@dataclass
class EvalConfig:
    """What ``pspnet-ros eval`` does; see docs/EVALUATION.md."""

    bags: Sequence[str]
    image_topic: str = ''
    label_topic: str = ''
    labels_dir: str = ''
    pred_topic: str = ''
    stamp_tolerance: float = 0.0
    out: str = 'eval_out'
    write_bag: str = ''
    write_storage: str = 'sqlite3'
    write_prefix: str = '/pspnet'
    # Copy the label topic into --write-bag, so the prediction bag scores on its own
    # (eval PRED_BAG --pred-topic /pspnet/mask --label-topic /camera/labels).
    write_labels: bool = True
    samples: int = 4
    limit: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    ignore_index: int | None = None
    max_pending: int = 256
    progress: bool = True

    def validate(self) -> None:
        if not self.bags:
            raise ValueError('give at least one bag')
        if bool(self.image_topic) == bool(self.pred_topic):
            raise ValueError('give exactly one of --image-topic (run the model) or --pred-topic '
                             '(score recorded masks)')
        if self.label_topic and self.labels_dir:
            raise ValueError('give --label-topic or --labels-dir, not both')
        if self.pred_topic and not (self.label_topic or self.labels_dir):
            raise ValueError('--pred-topic needs ground truth: --label-topic or --labels-dir')
        if self.pred_topic and self.write_bag:
            raise ValueError('--write-bag needs the model (--image-topic), not --pred-topic')
        if self.stamp_tolerance < 0:
            raise ValueError(f'--stamp-tolerance must be >= 0 seconds, got '
                             f'{self.stamp_tolerance}')


class Frame(NamedTuple):
    """An image (or prediction) message waiting for its label."""

    index: int
    time_ns: int
    msgtype: str
    msg: Any


@dataclass
class _State:
    n: int
    conf: np.ndarray
    timings: dict[str, list[float]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    samples: list = field(default_factory=list)
    read: int = 0
    processed: int = 0
    scored: int = 0
    labels_unmatched: int = 0
    labels_bad: int = 0
    # Time-range shards of one bag (see run_bag): labels of this shard's own range given up
    # as unmatched, and labels of a neighbour's range this shard matched; keys are
    # (bag path, bag time ns, header stamp ns). merge() settles them.
    own_unmatched: set = field(default_factory=set)
    foreign_matched: set = field(default_factory=set)

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, detail)

    def time(self, stage: str, seconds: float) -> None:
        self.timings.setdefault(stage, []).append(seconds)

    def merge(self, other: '_State', max_samples: int) -> None:
        """Add ``other`` (a later part of the same run, in bag order) to this state."""
        self.conf += other.conf
        for stage, values in other.timings.items():
            self.timings.setdefault(stage, []).extend(values)
        self.skipped.update(other.skipped)
        for reason, detail in other.examples.items():
            self.examples.setdefault(reason, detail)
        self.samples.extend(other.samples[:max(max_samples - len(self.samples), 0)])
        for name in ('read', 'processed', 'scored', 'labels_unmatched', 'labels_bad'):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.own_unmatched |= other.own_unmatched
        self.foreign_matched |= other.foreign_matched

    def settle_shard_labels(self) -> None:
        """Count the shard labels that no shard matched as unmatched (after all merges)."""
        self.labels_unmatched += len(self.own_unmatched - self.foreign_matched)
        self.own_unmatched, self.foreign_matched = set(), set()


class _ShardLabel(NamedTuple):
    """A label read by a time-range shard; ``own`` when its bag time is in the shard's range
    (not in the margin read around it)."""

    key: tuple
    own: bool
    value: Any


def _decode_rgb(msgtype: str, msg, max_pixels: int) -> np.ndarray:
    if msgtype == COMPRESSED:
        return compressed_to_rgb(msg.format, msg.data, max_pixels)
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                        msg.data, max_pixels)


def _decode_labels(msgtype: str, msg, max_pixels: int) -> np.ndarray:
    if msgtype == COMPRESSED:
        return compressed_to_labels(msg.format, msg.data, max_pixels)
    return image_to_labels(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                           msg.data, max_pixels)


def _small(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    th = max(1, round(h * SAMPLE_WIDTH / w))
    return cv2.resize(a, (SAMPLE_WIDTH, th), interpolation=cv2.INTER_NEAREST)


class BagEvaluator:
    """Streams frames; keeps only the confusion matrix, timing lists and a few samples."""

    def __init__(self, cfg: EvalConfig, segmenter=None, class_names: Sequence[str] = (),
                 palette: np.ndarray | None = None, ignore_index: int | None = None):
        cfg.validate()
        self.cfg = cfg
        self.seg = segmenter
        if segmenter is not None:
            class_names = segmenter.class_names
            palette = segmenter.palette
            ignore_index = segmenter.labelset.ignore_index if ignore_index is None \
                else ignore_index
        if not class_names:
            raise ValueError('class names are needed to score predictions')
        self.class_names = list(class_names)
        self.palette = palette if palette is not None else np.zeros((len(class_names), 3),
                                                                    np.uint8)
        self.ignore = cfg.ignore_index if cfg.ignore_index is not None else ignore_index
        self.ts = typestore()
        self.reset()
        self.writer: PredictionWriter | None = None
        self.labels_dir = LabelDir(cfg.labels_dir, int(round(cfg.stamp_tolerance * 1e9))) \
            if cfg.labels_dir else None
        # Called with the bag's frame count after each frame read (progress of a worker).
        self.on_read: Callable[[int], None] | None = None

    def reset(self) -> None:
        """Forget the frames evaluated so far (a worker starting its next shard)."""
        n = len(self.class_names)
        self.state = _State(n, np.zeros((n, n), np.int64))

    @property
    def has_gt(self) -> bool:
        return bool(self.cfg.label_topic or self.cfg.labels_dir)

    # -- per frame --------------------------------------------------------------------------
    def _process(self, frame: Frame, label: Any, sample_at: set[int]) -> None:
        st, cfg = self.state, self.cfg
        t0 = time.perf_counter()
        model_s = 0.0
        img = None
        try:
            if self.seg is None:
                try:
                    pred = _decode_labels(frame.msgtype, frame.msg, cfg.max_pixels)
                except ImageError as exc:
                    st.skip('bad_prediction', str(exc))
                    return
            else:
                try:
                    img = _decode_rgb(frame.msgtype, frame.msg, cfg.max_pixels)
                except ImageError as exc:
                    st.skip('bad_image', str(exc))
                    return
                st.time('decode', time.perf_counter() - t0)
                try:
                    res = self.seg(img, occupancy=self.writer is not None)
                except ImageError as exc:
                    st.skip('bad_image', str(exc))
                    return
                except Exception as exc:  # a backend failure must not end the evaluation
                    st.skip('model_error', f'{type(exc).__name__}: {exc}')
                    return
                pred = res.labels
                model_s = res.timings['total']
                for k in MODEL_STAGES:
                    st.time(k, res.timings[k])
                if self.writer is not None:
                    counts = res.occupancy.counts
                    self.writer.write(frame.msg.header, frame.time_ns, pred,
                                      self.seg.colorize(pred),
                                      encode_occupancy(self.class_names, counts))
            st.processed += 1
            if isinstance(label, ImageError):
                st.skip('bad_label', str(label))
                return
            if label is None:
                if self.has_gt:
                    st.skip('no_label', f'no ground-truth label for stamp '
                            f'{stamp_ns(frame.msg.header) / 1e9:.9f} s (tolerance '
                            f'{cfg.stamp_tolerance} s)')
                return
            if label.shape != pred.shape:
                st.skip('size_mismatch', f'label {label.shape[1]}x{label.shape[0]} but frame '
                        f'{pred.shape[1]}x{pred.shape[0]}')
                return
            try:
                st.conf += confusion_matrix(pred, label, st.n, self.ignore)
            except ValueError as exc:
                st.skip('bad_prediction', str(exc))
                return
            st.scored += 1
            if frame.index in sample_at and len(st.samples) < cfg.samples:
                st.samples.append((None if img is None else _small(img), _small(label),
                                   _small(pred)))
        finally:
            st.time('evaluator', time.perf_counter() - t0 - model_s)

    def _label_from_msg(self, msgtype: str, msg, own: bool = True) -> Any:
        try:
            return _decode_labels(msgtype, msg, self.cfg.max_pixels)
        except ImageError as exc:
            if own:
                self.state.labels_bad += 1
            return exc

    def _label_from_dir(self, stamp: int, index: int) -> Any:
        path = self.labels_dir.lookup(stamp, index)
        if path is None:
            return None
        try:
            return read_label(path)
        except ImageError as exc:
            return exc

    # -- per bag ----------------------------------------------------------------------------
    def run_bag(self, path: str, start_ns: int | None = None, stop_ns: int | None = None,
                margin_ns: int = 0, frames_hint: int = 0) -> dict:
        """Evaluate one bag, or with ``start_ns``/``stop_ns`` the frames whose bag time is in
        ``[start_ns, stop_ns)`` (a time-range shard; None = open end). A shard also reads the
        labels within ``margin_ns`` around its range, so frames at its edges find labels
        recorded just across; each label is counted (bad, unmatched) by the shard whose range
        holds it. Returns the bag's entry for the report; ``_conf`` is its confusion matrix."""
        cfg, st = self.cfg, self.state
        info = {'path': str(path), 'storage': '', 'error': '', 'recovered': '', 'read_error': '',
                'frames_read': 0, 'frames_scored': 0, '_conf': np.zeros_like(st.conf)}
        conf0, scored0 = st.conf.copy(), st.scored
        frame_topic = cfg.pred_topic or cfg.image_topic
        ranged = start_ns is not None or stop_ns is not None
        lo = start_ns if start_ns is not None else -1
        hi = stop_ns if stop_ns is not None else 1 << 63
        try:
            src = BagSource(Path(path)).open()
        except BagError as exc:
            info['error'] = str(exc)
            return info
        try:
            info['storage'], info['recovered'] = src.storage, src.recovered
            types = (IMAGE,) if cfg.pred_topic else IMAGE_TYPES
            src.require(frame_topic, types, 'prediction' if cfg.pred_topic else 'image')
            topics = [frame_topic]
            if cfg.label_topic:
                src.require(cfg.label_topic, IMAGE_TYPES, 'label')
                topics.append(cfg.label_topic)
        except BagError as exc:
            info['error'] = str(exc)
            src.close()
            return info
        total = frames_hint if ranged else src.count(frame_topic)
        if cfg.limit:
            total = min(total, cfg.limit) if total else cfg.limit
        k = max(cfg.samples - len(st.samples), 0)
        sample_at = set(np.linspace(0, max(total - 1, 0), k).round().astype(int).tolist()) \
            if k and total else set(range(k))

        def unmatched(label) -> None:
            if isinstance(label, _ShardLabel) and label.own:
                st.own_unmatched.add(label.key)

        matcher = StampMatcher(int(round(cfg.stamp_tolerance * 1e9)), cfg.max_pending,
                               unmatched if ranged else None) if cfg.label_topic else None
        bar = None
        if cfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=total or None, desc=Path(path).name, unit='frame', file=sys.stderr)
        index = 0
        read_lo = None if start_ns is None else max(start_ns - margin_ns, 0)
        read_hi = None if stop_ns is None else stop_ns + margin_ns
        try:
            for topic, msgtype, t, raw in src.messages(topics, read_lo, read_hi):
                own = lo <= t < hi
                if topic == frame_topic:
                    if not own:
                        continue
                    if cfg.limit and index >= cfg.limit:
                        break
                    index += 1
                    info['frames_read'] += 1
                    st.read += 1
                    if bar is not None:
                        bar.update(1)
                    if self.on_read is not None:
                        self.on_read(info['frames_read'])
                try:
                    msg = self.ts.deserialize_cdr(raw, msgtype)
                except Exception as exc:
                    if topic == frame_topic:
                        st.skip('deserialize_error', f'{topic} at {t}: {type(exc).__name__}: '
                                f'{exc}')
                    elif own:
                        st.labels_bad += 1
                    continue
                stamp = stamp_ns(msg.header)
                if topic != frame_topic and self.writer is not None and cfg.write_labels:
                    self.writer.bag.write_raw(topic, msgtype, raw, t)
                if topic != frame_topic:
                    label = self._label_from_msg(msgtype, msg, own)
                    if ranged:
                        label = _ShardLabel((str(path), t, stamp), own, label)
                    ready = matcher.add_label(stamp, label)
                else:
                    frame = Frame(index - 1, t, msgtype, msg)
                    if matcher is not None:
                        ready = matcher.add_image(stamp, frame)
                    elif self.labels_dir is not None:
                        ready = [(frame, self._label_from_dir(stamp, index - 1))]
                    else:
                        ready = [(frame, None)]
                for fr, label in ready:
                    self._process(fr, self._unwrap(label), sample_at)
            if matcher is not None:
                for fr, label in matcher.flush():
                    self._process(fr, self._unwrap(label), sample_at)
                if not ranged:
                    st.labels_unmatched += matcher.labels_unmatched
        finally:
            if bar is not None:
                bar.close()
            src.close()
        info['read_error'] = src.read_error
        info['_conf'] = st.conf - conf0
        info['frames_scored'] = st.scored - scored0
        return info

    def _unwrap(self, label: Any) -> Any:
        if isinstance(label, _ShardLabel):
            if not label.own:
                self.state.foreign_matched.add(label.key)
            return label.value
        return label

    # -- whole run --------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, st = self.cfg, self.state
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        if cfg.write_bag:
            self.writer = PredictionWriter(cfg.write_bag, cfg.write_storage, cfg.write_prefix)
        t0 = time.perf_counter()
        try:
            bags = [self.run_bag(b) for b in cfg.bags]
        finally:
            if self.writer is not None:
                self.writer.close()
        wall = time.perf_counter() - t0
        report = self.report(bags, wall)
        write_outputs(report, Path(cfg.out), st.timings, st.samples, self.palette)
        return report

    def describe(self) -> dict:
        """What the report says about the model and ground truth (see ``build_report``)."""
        model = None
        if self.seg is not None:
            model = {'name': self.seg.card.name, 'card': str(self.seg.card.path or ''),
                     'backend': getattr(self.seg.backend, 'name', type(self.seg.backend).__name__),
                     'device': getattr(self.seg.backend, 'device', ''),
                     'input_size': list(self.seg.input_size)}
        cfg = self.cfg
        ground_truth = ('label topic ' + cfg.label_topic) if cfg.label_topic else \
            (f'labels dir {cfg.labels_dir} (by {self.labels_dir.mode})' if cfg.labels_dir
             else None)
        return {'model': model, 'ground_truth': ground_truth, 'class_names': self.class_names,
                'ignore_index': self.ignore, 'palette': np.asarray(self.palette)}

    def report(self, bags: list[dict], wall: float, workers: int = 1) -> dict:
        return build_report(self.cfg, self.state, bags, wall, self.describe(),
                            self.writer.count if self.writer else 0, workers)


def bag_summary(info: dict, class_names: Sequence[str], worst: int = 3) -> dict:
    """A bag's report entry: ``info`` without its confusion matrix ``_conf``, plus its mIoU
    and the ``worst`` classes (lowest IoU among those in the bag's ground truth)."""
    out = {k: v for k, v in info.items() if k != '_conf'}
    conf = info['_conf']
    out['miou'], out['worst_classes'] = None, []
    if info['frames_scored'] and conf.sum():
        s = scores(conf)
        present = np.flatnonzero(conf.sum(1) > 0)
        out['miou'] = s['miou']
        order = sorted(present.tolist(), key=lambda i: (s['iou'][i], i))[:worst]
        out['worst_classes'] = [{'class': class_names[i], 'iou': s['iou'][i]} for i in order]
    return out


def build_report(cfg: EvalConfig, st: _State, bags: list[dict], wall: float, described: dict,
                 written: int = 0, workers: int = 1) -> dict:
    """The report (``report.json``) of a run whose frames are all in ``st``. ``workers`` > 1
    (parallel runs) only changes ``evaluator_frames_per_s``: model time is spread over them."""
    class_names = described['class_names']
    model_s = float(np.sum(st.timings.get('total', [])))
    metrics = None
    if st.scored:
        s = scores(st.conf)
        gt = st.conf.sum(1)
        metrics = {'miou': s['miou'], 'iou': dict(zip(class_names, s['iou'])),
                   'pixel_accuracy': s['pixel_accuracy'],
                   'mean_accuracy': s['mean_accuracy'], 'fwiou': s['fwiou'],
                   'pixels': s['pixels'], 'classes_present': int((gt > 0).sum()),
                   'gt_pixels': dict(zip(class_names, gt.tolist()))}
    done = st.read
    model_wall = model_s / max(workers, 1)
    return {
        'tool': 'pspnet-ros eval',
        'created': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'mode': 'predictions' if cfg.pred_topic else 'model',
        'ground_truth': described['ground_truth'],
        'topics': {'frames': cfg.pred_topic or cfg.image_topic, 'labels': cfg.label_topic},
        'stamp_tolerance_s': cfg.stamp_tolerance,
        'bags': [bag_summary(b, class_names) for b in bags],
        'model': described['model'],
        'class_names': list(class_names),
        'ignore_index': described['ignore_index'],
        'frames': {'read': st.read, 'processed': st.processed, 'scored': st.scored,
                   'skipped': sum(st.skipped.values()),
                   'skipped_by_reason': dict(sorted(st.skipped.items())),
                   'skip_examples': st.examples,
                   'labels_unmatched': st.labels_unmatched, 'labels_bad': st.labels_bad,
                   'written_to_bag': written},
        'metrics': metrics,
        'confusion': st.conf.tolist(),
        'latency_ms': {k: rep.percentiles(st.timings.get(k, []))
                       for k in ('decode', *MODEL_STAGES, 'evaluator')},
        'throughput': {
            'wall_s': wall,
            'frames_per_s': done / wall if wall > 0 else None,
            'evaluator_frames_per_s': done / (wall - model_wall) if wall > model_wall else None,
            'model_frames_per_s': len(st.timings.get('total', [])) / model_s
            if model_s else None},
        'write_bag': cfg.write_bag or None,
    }


def write_outputs(report: dict, out: Path, timings: dict[str, list[float]], samples: list,
                  palette: np.ndarray) -> None:
    """report.json, summary.md, plots and the sample montage in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in rep.PLOT_FILES:      # a previous run's plots must not pass for this run's
        (out / name).unlink(missing_ok=True)
    written = rep.plot_all(rep.clean(report), timings, out)
    if samples:
        rep.montage(samples, palette, out / 'samples.png', SAMPLE_WIDTH)
        written.append('samples.png')
    # report.json and summary.md list the files this run wrote (the returned report does
    # not change: the same run gives the same report however it is sharded).
    on_disk = dict(report, files=['report.json', 'summary.md', *written])
    rep.write_json(on_disk, out / 'report.json')
    (out / 'summary.md').write_text(rep.markdown(rep.clean(on_disk)))


def exit_code(report: dict) -> int:
    """0 when every bag was read completely, 1 when some bag (or a shard of a parallel run)
    failed or was cut short but frames were read, 2 when nothing could be read."""
    bags = report['bags']
    if all(b['error'] for b in bags) or not report['frames']['read']:
        return 2
    if any(b['error'] or b['read_error'] or b['recovered'] for b in bags) \
            or (report.get('fleet') or {}).get('failed_shards'):
        return 1
    return 0
