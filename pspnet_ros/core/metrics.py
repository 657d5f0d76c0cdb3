"""Segmentation metrics from a confusion matrix: IoU, mIoU, pixel accuracy, FWIoU."""
from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """``(C, C)`` int64 matrix, rows = ground truth, columns = prediction.

    Pixels whose target is ``ignore_index`` or outside ``[0, C)`` are not counted; predicted
    ids outside ``[0, C)`` raise, since they mean the model and label set disagree.
    """
    if pred.shape != target.shape:
        raise ValueError(f'prediction shape {pred.shape} != label shape {target.shape}')
    t = target.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    keep = (t >= 0) & (t < num_classes)
    if ignore_index is not None:
        keep &= t != ignore_index
    t, p = t[keep], p[keep]
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f'predicted class ids must be in [0, {num_classes}), got '
                         f'[{p.min()}, {p.max()}]')
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def scores(conf: np.ndarray) -> dict:
    """IoU per class (NaN where a class is in neither ground truth nor prediction), mIoU over
    the classes present in the ground truth, pixel accuracy, mean class accuracy and
    frequency-weighted IoU."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt = conf.sum(1)
    pr = conf.sum(0)
    union = gt + pr - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    present = gt > 0
    total = conf.sum()
    return {
        'iou': iou.tolist(),
        'miou': float(np.mean(iou[present])) if present.any() else float('nan'),
        'pixel_accuracy': float(tp.sum() / total) if total else float('nan'),
        'mean_accuracy': float(np.nanmean(acc[present])) if present.any() else float('nan'),
        'fwiou': float(np.sum(gt[present] / total * iou[present])) if total else float('nan'),
        'pixels': int(total),
    }
