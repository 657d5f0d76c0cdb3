"""Validation: score a Segmenter on image/label pairs with the project's metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.image import read_image
from ..core.metrics import confusion_matrix, scores
from ..core.segmenter import Segmenter
from .data import read_training_label


def evaluate_pairs(segmenter: Segmenter, pairs: Iterable[tuple[Path, Path]],
                   ignore_index: int | None = None, progress: bool = False) -> dict:
    """mIoU, per-class IoU, accuracies and median inference time over ``pairs`` (labels as
    class ids, or colours of the segmenter's label set)."""
    ignore = segmenter.labelset.ignore_index if ignore_index is None else ignore_index
    n = segmenter.num_classes
    conf = np.zeros((n, n), np.int64)
    times = []
    pairs = list(pairs)
    it = pairs
    if progress:
        from tqdm import tqdm
        it = tqdm(pairs, desc='eval', unit='img')
    for ip, lp in it:
        res = segmenter(read_image(ip), occupancy=False)
        truth = read_training_label(lp, segmenter.labelset)
        conf += confusion_matrix(res.labels, truth, n, ignore)
        times.append(res.timings['total'])
    out = scores(conf)
    out['images'] = len(pairs)
    out['median_total_s'] = float(np.median(times)) if times else float('nan')
    out['class_names'] = list(segmenter.class_names)
    out['confusion'] = conf.tolist()
    return out
