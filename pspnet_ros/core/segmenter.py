"""The segmentation pipeline: RGB image -> labels, confidence, occupancy, stage timings."""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
import os
import time
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from .backends import Backend, create_backend
from .card import check_input_size, ModelCard
from .image import DEFAULT_MAX_PIXELS, ensure_rgb8
from .labels import LabelSet, get_label_set
from .network import off_grid
from .preprocess import mirror_merge_scores, prepare, prepare_by_table
from .upsample import labels_at

LOG = logging.getLogger('pspnet_ros.segmenter')

# A region is (x0, y0, x1, y1) as fractions of the image width/height.
Region = tuple[float, float, float, float]


@dataclass
class Occupancy:
    """Per-class pixel counts and fractions, for the whole frame and for named regions."""

    counts: np.ndarray
    fractions: np.ndarray
    regions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class SegmentationResult:
    """What ``Segmenter`` returns for one image."""

    labels: np.ndarray                 # (H, W) uint8, or uint16 when classes > 255
    confidence: np.ndarray | None      # (H, W) float32 max softmax probability, or None
    occupancy: Occupancy | None
    timings: dict[str, float]          # seconds per stage


@dataclass
class InferredBatch:
    """``Segmenter.run_batch``'s result: the converted images, each one's valid area of the
    network input, the backend's outputs, what to compute per image, and the stage timings
    so far (seconds; ``inference`` for the whole batch)."""

    rgbs: list[np.ndarray]
    valid: list[tuple[int, int, int, int]]
    outputs: list[np.ndarray]
    confidence: list[bool]
    occupancy: list[bool]
    timings: dict[str, float]


def count_classes(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and fraction of each class in a label image."""
    if labels.dtype == np.uint8 and labels.size < (1 << 24) and num_classes <= 256:
        # OpenCV's histogram: a third of bincount's time; float32 counts are exact below 2^24.
        counts = cv2.calcHist([np.ascontiguousarray(labels)], [0], None, [num_classes],
                              [0, num_classes]).ravel().astype(np.int64)
    else:
        counts = np.bincount(labels.reshape(-1), minlength=num_classes)[:num_classes]
    total = max(int(labels.size), 1)
    return counts.astype(np.int64), (counts / total).astype(np.float32)


def check_region(region: Region) -> Region:
    """Return ``region`` if it is a valid fractional box, else raise ValueError."""
    x0, y0, x1, y1 = region
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f'region {region} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1')
    return region


def region_slice(region: Region, h: int, w: int) -> tuple[slice, slice]:
    """Pixel slices for a fractional region, at least one pixel each way."""
    x0, y0, x1, y1 = check_region(region)
    c0, r0 = min(int(x0 * w), w - 1), min(int(y0 * h), h - 1)
    c1, r1 = max(int(round(x1 * w)), c0 + 1), max(int(round(y1 * h)), r0 + 1)
    return slice(r0, r1), slice(c0, c1)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB image of a label map; ids outside the palette are black."""
    if labels.dtype == np.uint8:
        # One table lookup per channel: a fifth of the time of indexing the palette.
        lut = np.zeros((1, 256, 3), np.uint8)
        lut[0, :min(len(palette), 256)] = palette[:256]
        return cv2.LUT(cv2.merge([np.ascontiguousarray(labels)] * 3), lut)
    lut = np.zeros((max(int(labels.max(initial=0)) + 1, len(palette)), 3), np.uint8)
    lut[:len(palette)] = palette
    return lut.take(labels, axis=0)


def overlay(image: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour mask over an RGB image (``alpha`` = weight of the mask)."""
    return cv2.addWeighted(color, float(alpha), image, 1.0 - float(alpha), 0.0)


class Segmenter:
    """Runs a model card's model on RGB images through a chosen backend.

    Args:
        card: a ``ModelCard`` or the path of its YAML file.
        backend: backend name (``torch`` ...) or a ready ``Backend``.
        device: device for the backend (``cpu``, ``cuda``, ``cuda:1``).
        input_size: network input ``[height, width]``; defaults to the card's.
        resize_mode: ``stretch`` (resize to the input size) or ``letterbox`` (keep aspect,
            pad); defaults to the card's.
        max_pixels: larger images are rejected with ``ImageError``.
        backend_options: passed to the backend constructor.
        test_time_flip: also run each frame's mirror image and average the two class
            distributions (test-time augmentation: about twice the inference time for a
            little more accuracy, docs/RESULTS.md); needs a model that outputs class
            scores, not labels.
    """

    def __init__(self, card: ModelCard | str | os.PathLike, backend: str | Backend = 'torch',
                 device: str = 'cpu', input_size: Iterable[int] | None = None,
                 resize_mode: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 backend_options: Mapping | None = None, test_time_flip: bool = False):
        self.card = card if isinstance(card, ModelCard) else ModelCard.load(card)
        self.labelset: LabelSet = get_label_set(self.card.label_set)
        if self.labelset.num_classes != self.card.num_classes:
            raise ValueError(f'card {self.card.name}: num_classes {self.card.num_classes} but '
                             f'label set {self.labelset.name} has {self.labelset.num_classes}')
        self.input_size = check_input_size(input_size or self.card.input_size)
        self.resize_mode = resize_mode or self.card.resize_mode
        if self.resize_mode not in ('stretch', 'letterbox'):
            raise ValueError(f'resize_mode must be stretch or letterbox, got {self.resize_mode!r}')
        self.max_pixels = max_pixels
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = create_backend(backend, self.card, device,
                                          **dict(backend_options or {}))
            # ``auto`` may run an export of the card (its own file, input layout and dtype):
            # pre- and post-processing follow the card of the model that actually runs.
            self.card = self.backend.card
        if test_time_flip and self.card.output_kind != 'logits':
            raise ValueError(f'test_time_flip needs class scores, but model {self.card.name} '
                             f'outputs {self.card.output_kind}')
        self.test_time_flip = bool(test_time_flip)
        # Logits are resized with aligned corners: a size off the output-stride grid shifts
        # the prediction (a card of our own networks; third-party ones keep their own sizes).
        note = (off_grid(self.input_size, self.card.output_stride)
                if self.card.output_kind == 'logits' else None)
        if note:
            LOG.warning('model %s: input %s', self.card.name, note)
        # A quantised 8-bit input: a resize and a table lookup give the batch as it runs.
        self._table = self.backend.input_table()
        self._mean = np.asarray(self.card.mean, np.float32)
        self._inv_std = 1.0 / np.asarray(self.card.std, np.float32)
        self.palette = self.labelset.palette_array()

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.labelset.classes

    # -- stages -----------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Resize and normalise one RGB image to the backend's input layout
        (``core.preprocess``, which training and int8 calibration use too); for a quantised
        input, in the backend's integer values straight away (``prepare_by_table``).

        Returns the ``(1, ...)`` batch and the valid ``(top, left, height, width)`` area of the
        network input (the whole input for ``stretch``).
        """
        if self._table is not None:
            return prepare_by_table(image, self.input_size, self._table, self.resize_mode,
                                    self.card.input_layout, pad_value=self.card.mean)
        return prepare(image, self.input_size, self.card.mean, self.card.std, self.resize_mode,
                       self.card.input_layout, self.card.input_dtype)

    def postprocess(self, output: np.ndarray, shape: tuple[int, int],
                    valid: tuple[int, int, int, int], want_confidence: bool
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Backend output for one image -> labels (and confidence) at ``shape``."""
        h, w = shape
        ih, iw = self.input_size
        top, left, vh, vw = valid
        if self.card.output_kind == 'labels':
            lab = np.asarray(output).astype(np.int32)
            oh, ow = lab.shape[-2:]
            lab = lab.reshape(oh, ow)
            sy, sx = oh / ih, ow / iw
            lab = lab[int(top * sy):int(round((top + vh) * sy)),
                      int(left * sx):int(round((left + vw) * sx))]
            lab = cv2.resize(lab.astype(np.uint16 if self.num_classes > 255 else np.uint8),
                             (w, h), interpolation=cv2.INTER_NEAREST)
            return lab, None
        # torch loads with the first frame, not with this module: a process (the node) may
        # still have to choose libgomp's wait policy when it imports this (core.threads).
        import torch
        import torch.nn.functional as F
        logits = torch.from_numpy(np.ascontiguousarray(output, dtype=np.float32))
        if logits.ndim == 3:
            logits = logits[None]
        if self.card.output_layout == 'NHWC':
            logits = logits.permute(0, 3, 1, 2)
        # Channels-last: the per-pixel reduction over classes is then contiguous, which makes
        # it several times faster than arg-maxing over dim 1 of an NCHW tensor.
        logits = logits.contiguous(memory_format=torch.channels_last)
        if self.resize_mode != 'stretch' or logits.shape[-2:] == (ih, iw):
            if logits.shape[-2:] != (ih, iw):
                logits = F.interpolate(logits, (ih, iw), mode='bilinear', align_corners=True)
            logits = logits[..., top:top + vh, left:left + vw]
        # Stretch: feature grid corners sit on input corners (sizes 8k+1), so one
        # align-corners resize maps features straight to the frame. It runs in row bands,
        # so a 4K frame needs no 4K x classes float tensor (core.upsample).
        return labels_at(logits, (h, w), want_confidence,
                         np.uint16 if self.num_classes > 255 else np.uint8)

    def _with_mirror(self, batch: np.ndarray, out) -> list[np.ndarray]:
        """Run the mirrored batch and return, per image, the log of the mean of the two
        class distributions (the mirrored one flipped back): scores whose softmax is that
        mean, so ``postprocess`` and the confidence work on them unchanged."""
        width = -1 if self.card.input_layout == 'NCHW' else -2
        mirrored = self.backend.run(np.ascontiguousarray(np.flip(batch, width)))
        c_axis, w_axis = (0, -1) if self.card.output_layout == 'NCHW' else (-1, -2)
        return [mirror_merge_scores(np.asarray(a, np.float32).reshape(np.shape(a)[-3:]),
                                    np.asarray(b, np.float32).reshape(np.shape(b)[-3:]),
                                    c_axis, w_axis).numpy()
                for a, b in zip(out, mirrored)]

    def occupancy(self, labels: np.ndarray, regions: Mapping[str, Region] | None = None
                  ) -> Occupancy:
        counts, fractions = count_classes(labels, self.num_classes)
        occ = Occupancy(counts, fractions)
        h, w = labels.shape
        for name, region in (regions or {}).items():
            rs, cs = region_slice(region, h, w)
            occ.regions[name] = count_classes(labels[rs, cs], self.num_classes)
        return occ

    # -- public -----------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, confidence: bool = False, occupancy: bool = True,
                 regions: Mapping[str, Region] | None = None) -> SegmentationResult:
        """Segment one image (any size; see ``ensure_rgb8`` for accepted formats)."""
        return self.segment_batch([image], confidence, occupancy, regions)[0]

    def segment_batch(self, images: Sequence[np.ndarray],
                      confidence: bool | Sequence[bool] = False,
                      occupancy: bool | Sequence[bool] = True,
                      regions: Mapping[str, Region] | None = None
                      ) -> list[SegmentationResult]:
        """Segment several images (any sizes) with one backend run.

        The frames are preprocessed one by one, stacked into one ``(N, ...)`` batch and run
        together (a backend with a static batch of 1 runs them one after another); each result
        is then cut back to its own image's size. Results come in the order of ``images`` and
        equal what ``segmenter(image)`` gives for each, to float rounding of the batched
        convolutions. ``confidence`` and ``occupancy`` may be given per image. Each result's
        ``timings['inference']`` is the time of the whole batch run.

        Raises ``ImageError`` for the first image that cannot be converted (nothing runs then:
        check frames with ``ensure_rgb8`` first when one bad frame must not cost the others).

        The same as ``finish_batch(run_batch(...))``: the node runs the two halves on two
        threads, so that one frame is postprocessed while the next one is inferred.
        """
        return self.finish_batch(self.run_batch(images, confidence, occupancy), regions)

    def run_batch(self, images: Sequence[np.ndarray],
                  confidence: bool | Sequence[bool] = False,
                  occupancy: bool | Sequence[bool] = True) -> InferredBatch:
        """The first half of ``segment_batch``: conversion, preprocessing and the backend run
        (the part that needs the backend; ``finish_batch`` does not)."""
        n = len(images)
        if n == 0:
            return InferredBatch([], [], [], [], [], {})
        want_conf = [bool(confidence)] * n if isinstance(confidence, bool) else list(confidence)
        want_occ = [bool(occupancy)] * n if isinstance(occupancy, bool) else list(occupancy)
        if len(want_conf) != n or len(want_occ) != n:
            raise ValueError(f'segment_batch: {n} images but {len(want_conf)} confidence and '
                             f'{len(want_occ)} occupancy flags')
        t0 = time.perf_counter()
        rgbs = [ensure_rgb8(image, self.max_pixels) for image in images]
        t1 = time.perf_counter()
        prepared = [self.preprocess(rgb) for rgb in rgbs]
        batch = prepared[0][0] if n == 1 else np.concatenate([x for x, _ in prepared])
        t2 = time.perf_counter()
        out = self.backend.run(batch)
        if self.test_time_flip:
            out = self._with_mirror(batch, out)
        t3 = time.perf_counter()
        if len(out) != n:
            raise RuntimeError(f'backend {self.backend.name} returned {len(out)} outputs for a '
                               f'batch of {n}')
        return InferredBatch(rgbs, [v for _, v in prepared], list(out), want_conf, want_occ,
                             {'convert': (t1 - t0) / n, 'preprocess': (t2 - t1) / n,
                              'inference': t3 - t2})

    def finish_batch(self, inferred: InferredBatch,
                     regions: Mapping[str, Region] | None = None
                     ) -> list[SegmentationResult]:
        """The second half of ``segment_batch``: each image's labels (and confidence) at its
        own size, and its occupancy."""
        t = inferred.timings
        results = []
        for rgb, valid, out, conf_wanted, occ_wanted in zip(
                inferred.rgbs, inferred.valid, inferred.outputs, inferred.confidence,
                inferred.occupancy):
            ta = time.perf_counter()
            labels, conf = self.postprocess(out, rgb.shape[:2], valid, conf_wanted)
            occ = self.occupancy(labels, regions) if occ_wanted else None
            tb = time.perf_counter()
            results.append(SegmentationResult(labels, conf, occ, {
                **t, 'postprocess': tb - ta,
                'total': t['convert'] + t['preprocess'] + t['inference'] / len(inferred.rgbs)
                + (tb - ta)}))
        return results

    def replica(self, num_threads: int) -> Segmenter | None:
        """The same model and settings on a backend instance of its own with ``num_threads``
        CPU threads (``Backend.replica``), for another thread; None when the backend has none."""
        backend = self.backend.replica(num_threads)
        if backend is None:
            return None
        return Segmenter(self.card, backend, input_size=self.input_size,
                         resize_mode=self.resize_mode, max_pixels=self.max_pixels,
                         test_time_flip=self.test_time_flip)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        return colorize(labels, self.palette)
