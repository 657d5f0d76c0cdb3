"""Validate and convert input images to the RGB uint8 arrays the pipeline expects."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .sizes import DEFAULT_MAX_PIXELS


class ImageError(ValueError):
    """An input image cannot be segmented; the message says what was wrong and what to do."""


def ensure_rgb8(image: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return ``image`` as a contiguous ``(H, W, 3)`` uint8 RGB array.

    Documented conversions: grey ``(H, W)`` or ``(H, W, 1)`` is replicated to three channels;
    RGBA ``(H, W, 4)`` drops alpha; uint16 is scaled to 8 bits (``>> 8``). Anything else
    (float or bool data, other channel counts, empty or oversized images) raises ImageError.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f'expected a numpy array, got {type(image).__name__}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageError(f'expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape '
                         f'{image.shape}')
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f'image has zero size ({h}x{w})')
    if h * w > max_pixels:
        raise ImageError(f'image {w}x{h} has {h * w} pixels, over the limit of {max_pixels}; '
                         'downscale it or raise max_pixels')
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f'unsupported pixel type {image.dtype}; pass uint8 or uint16 '
                         '(for float images in [0, 1] use (img * 255).round().astype(np.uint8))')
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, ...) as RGB uint8 via OpenCV."""
    import cv2
    path = Path(path)
    if not path.is_file():
        raise ImageError(f'image file not found: {path}')
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f'image file is empty: {path}')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f'could not decode {path}: not an image or truncated')
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return ensure_rgb8(img, max_pixels)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel label image (class id per pixel) as uint8/uint16."""
    import cv2
    path = Path(path)
    if not path.is_file():
        raise ImageError(f'label file not found: {path}')
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise ImageError(f'could not decode label image {path}')
    if lab.ndim != 2:
        raise ImageError(f'label image {path} must be single-channel, got shape {lab.shape}')
    return lab
