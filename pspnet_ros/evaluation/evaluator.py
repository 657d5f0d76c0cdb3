"""Replay bags through the Segmenter (or read recorded predictions) and score them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import cv2
import numpy as np

from ..core.image import DEFAULT_MAX_PIXELS, ImageError, read_label
from ..core.metrics import confusion_matrix
from ..core.occupancy_msg import encode_occupancy
from ..core.rosimage import (compressed_to_labels, compressed_to_rgb, image_to_labels,
                             image_to_rgb)
from .bagio import BagError, BagSource, COMPRESSED, IMAGE, IMAGE_TYPES, PredictionWriter, \
    stamp_ns, typestore
from .matching import LabelDir, StampMatcher
from .report import build_report, MODEL_STAGES, SAMPLE_WIDTH, write_outputs
from .state import EvalState, ShardScope


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
        self.state = EvalState.empty(len(self.class_names))

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
            st.count_outside(label, self.ignore)
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
        recorded just across (``state.ShardScope``). Returns the bag's entry for the report;
        ``_conf`` is its confusion matrix."""
        cfg, st = self.cfg, self.state
        # (plus 'count_mismatch' when the bag holds fewer or more frames than it declares)
        info = {'path': str(path), 'storage': '', 'error': '', 'recovered': '', 'read_error': '',
                'frames_read': 0, 'frames_scored': 0, '_conf': np.zeros_like(st.conf)}
        conf0, scored0 = st.conf.copy(), st.scored
        frame_topic = cfg.pred_topic or cfg.image_topic
        scope = ShardScope(str(path), st, start_ns, stop_ns)
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
        declared = src.count(frame_topic)
        total = frames_hint if scope.ranged else declared
        if cfg.limit:
            total = min(total, cfg.limit) if total else cfg.limit
        k = max(cfg.samples - len(st.samples), 0)
        sample_at = set(np.linspace(0, max(total - 1, 0), k).round().astype(int).tolist()) \
            if k and total else set(range(k))
        matcher = StampMatcher(int(round(cfg.stamp_tolerance * 1e9)), cfg.max_pending,
                               scope.unmatched if scope.ranged else None) \
            if cfg.label_topic else None
        bar = None
        if cfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=total or None, desc=Path(path).name, unit='frame', file=sys.stderr)
        index = 0
        read_lo = None if start_ns is None else max(start_ns - margin_ns, 0)
        read_hi = None if stop_ns is None else stop_ns + margin_ns
        try:
            for topic, msgtype, t, raw in src.messages(topics, read_lo, read_hi):
                own = scope.own(t)
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
                    label = scope.wrap(t, stamp, self._label_from_msg(msgtype, msg, own))
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
                    self._process(fr, scope.unwrap(label), sample_at)
            if matcher is not None:
                for fr, label in matcher.flush():
                    self._process(fr, scope.unwrap(label), sample_at)
                if not scope.ranged:
                    st.labels_unmatched += matcher.labels_unmatched
        finally:
            if bar is not None:
                bar.close()
            src.close()
        info['read_error'] = src.read_error
        if declared and not (scope.ranged or cfg.limit or src.read_error or src.recovered) \
                and declared != info['frames_read']:
            info['count_mismatch'] = (f"the bag's index declares {declared} messages on "
                                      f'{frame_topic}, but {info["frames_read"]} were read')
        info['_conf'] = st.conf - conf0
        info['frames_scored'] = st.scored - scored0
        return info

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
