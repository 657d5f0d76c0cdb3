"""Pure pre-processing (resize, normalise, layout) and probability averaging, shared by the
Segmenter, training (teacher targets, batches) and int8 calibration."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

# (top, left, height, width) of the image inside the network input.
Valid = tuple[int, int, int, int]


def resize_to_input(image: np.ndarray, input_size: Sequence[int], mode: str = 'stretch',
                    pad_value: Sequence[float] = (0, 0, 0)) -> tuple[np.ndarray, Valid]:
    """An RGB uint8 ``image`` resized to ``input_size`` ``(height, width)``.

    ``stretch`` resizes to the input size; ``letterbox`` keeps the aspect ratio and fills the
    rest with ``pad_value`` (clipped to 0..255; the mean, so it normalises to zero). Returns the
    resized image and the valid ``(top, left, height, width)`` area of it.
    """
    ih, iw = (int(v) for v in input_size)
    h, w = image.shape[:2]
    if mode == 'stretch':
        return cv2.resize(image, (iw, ih), interpolation=cv2.INTER_LINEAR), (0, 0, ih, iw)
    if mode != 'letterbox':
        raise ValueError(f'resize_mode must be stretch or letterbox, got {mode!r}')
    s = min(ih / h, iw / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    top, left = (ih - nh) // 2, (iw - nw) // 2
    resized = np.empty((ih, iw, 3), np.uint8)
    resized[:] = np.clip(np.asarray(pad_value, np.float32), 0, 255).astype(np.uint8)
    resized[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh),
                                                       interpolation=cv2.INTER_LINEAR)
    return resized, (top, left, nh, nw)


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(image - mean) / std`` per RGB channel as float32 (any leading axes), computed as
    ``(image - mean) * (1 / std)`` everywhere so that every path gives the same bits."""
    inv_std = np.float32(1.0) / np.asarray(std, np.float32)
    return (image.astype(np.float32) - np.asarray(mean, np.float32)) * inv_std


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """One ``(H, W, C)`` image -> a contiguous ``(1, C, H, W)`` (``NCHW``) or ``(1, H, W, C)``
    (``NHWC``) batch."""
    if layout not in ('NCHW', 'NHWC'):
        raise ValueError(f'input layout must be NCHW or NHWC, got {layout!r}')
    x = x[None] if layout == 'NHWC' else x.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x)


def prepare(image: np.ndarray, input_size: Sequence[int], mean: Sequence[float],
            std: Sequence[float], resize_mode: str = 'stretch', layout: str = 'NCHW',
            dtype: str = 'float32') -> tuple[np.ndarray, Valid]:
    """An RGB uint8 image -> the ``(1, ...)`` network input and its valid area: resized
    (``resize_to_input``), normalised unless ``dtype`` is ``uint8``, in ``layout``."""
    resized, valid = resize_to_input(image, input_size, resize_mode, pad_value=mean)
    x = resized if dtype == 'uint8' else normalise(resized, mean, std)
    return to_layout(x, layout), valid


def prepare_by_table(image: np.ndarray, input_size: Sequence[int], table: np.ndarray,
                     resize_mode: str = 'stretch', layout: str = 'NCHW',
                     pad_value: Sequence[float] = (0, 0, 0)) -> tuple[np.ndarray, Valid]:
    """``prepare`` for a model whose input is a function of each 8-bit pixel value (a
    quantised input): resize, then look every value up in ``table`` ``(256, 3)``, the model's
    input for each pixel value of each channel (``Backend.input_table``). The values are
    those of normalising and quantising every pixel; one lookup costs a tenth of that."""
    resized, valid = resize_to_input(image, input_size, resize_mode, pad_value)
    x = cv2.LUT(resized, np.ascontiguousarray(table.reshape(1, 256, -1)))
    return to_layout(x, layout), valid


def card_input(image: np.ndarray, card, input_size: Sequence[int] | None = None,
               resize_mode: str | None = None, layout: str | None = None,
               dtype: str | None = None) -> tuple[np.ndarray, Valid]:
    """``prepare`` with a ``ModelCard``'s input contract (each part may be overridden)."""
    return prepare(image, input_size or card.input_size, card.mean, card.std,
                   resize_mode or card.resize_mode, layout or card.input_layout,
                   dtype or card.input_dtype)


def mirror_mean(probs, mirrored_probs, width_axis: int = -1):
    """The mean of class probabilities and those of the mirror image flipped back (torch
    tensors or numpy arrays of the same shape; ``width_axis`` is the image width)."""
    import torch
    p = torch.as_tensor(probs)
    m = torch.as_tensor(mirrored_probs)
    return (p + m.flip(width_axis)) / 2


def mirror_merge_scores(scores, mirrored_scores, class_axis: int = 0, width_axis: int = -1):
    """Scores whose softmax is the mean of the two class distributions of ``scores`` and
    ``mirrored_scores`` (the mirrored one flipped back): the log of that mean, so code that
    arg-maxes or soft-maxes logits works on them unchanged."""
    import torch
    a = torch.as_tensor(scores, dtype=torch.float32)
    b = torch.as_tensor(mirrored_scores, dtype=torch.float32)
    return mirror_mean(a.softmax(class_axis), b.softmax(class_axis), width_axis
                       ).clamp_min(1e-12).log()


def mean_over_sizes(probabilities: Sequence):
    """The mean of class probabilities computed at several input sizes (each already resized
    to the same output size)."""
    total = 0
    for p in probabilities:
        total = total + p
    return total / len(probabilities)
