"""Convert ROS image message fields (plain values, no ROS imports) to and from numpy arrays."""
from __future__ import annotations

import cv2
import numpy as np

from .compressed import read_structure
from .image import DEFAULT_MAX_PIXELS, ImageError

# encoding -> (channels, bytes per channel). Names follow sensor_msgs/image_encodings.
# 'yuv422' is UYVY byte order (as in sensor_msgs and cv_bridge); 'yuv422_yuy2' is YUYV.
ENCODINGS: dict[str, tuple[int, int]] = {
    'rgb8': (3, 1), 'bgr8': (3, 1), 'rgba8': (4, 1), 'bgra8': (4, 1),
    'mono8': (1, 1), '8UC1': (1, 1), 'mono16': (1, 2), '16UC1': (1, 2),
    'yuv422': (2, 1), 'uyvy': (2, 1), 'yuv422_yuy2': (2, 1), 'yuyv': (2, 1),
}
RGB_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'yuv422', 'uyvy',
                 'yuv422_yuy2', 'yuyv')
LABEL_ENCODINGS = ('mono8', '8UC1', 'mono16', '16UC1')
_UYVY = ('yuv422', 'uyvy')
_YUYV = ('yuv422_yuy2', 'yuyv')

# (height, width, encoding, step, data): what an Image message needs besides its header;
# is_bigendian is always 0 for what this module writes.
ImageFields = tuple[int, int, str, int, bytes]


def shown(text: str, limit: int = 48, quote: bool = True) -> str:
    """``text`` (quoted as ``repr`` does when ``quote``), cut to ``limit`` characters with
    its length said: a header field may hold kilobytes, and it goes into logged errors."""
    text = str(text)
    cut = text if len(text) <= limit else text[:limit]
    cut = repr(cut) if quote else cut
    return cut if len(text) <= limit else f'{cut}... ({len(text)} characters)'


def _check_size(height: int, width: int, max_pixels: int, what: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageError(f'{what} has zero size ({width}x{height}); the publisher sent an '
                         'empty image')
    if height * width > max_pixels:
        raise ImageError(f'{what} {width}x{height} has {height * width} pixels, over the '
                         f'limit of {max_pixels}; downscale it or raise max_pixels')


def image_to_array(height: int, width: int, encoding: str, is_bigendian: bool | int,
                   step: int, data: bytes | bytearray | memoryview | np.ndarray,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of a sensor_msgs/Image as an ``(H, W, C)`` array in native byte order.

    Nothing in the header is trusted: the encoding must be known, ``step`` must hold a row
    and ``data`` must hold ``step * height`` bytes (extra bytes are ignored). 16-bit data is
    byte-swapped when ``is_bigendian`` differs from this machine. YUV 4:2:2 encodings come
    back as ``(H, W, 2)`` uint8, as stored.
    """
    if encoding not in ENCODINGS:
        raise ImageError(f'unsupported image encoding {shown(encoding)}; supported: '
                         f'{", ".join(ENCODINGS)}')
    height, width, step = int(height), int(width), int(step)
    what = f'Image {width}x{height} {encoding}'
    _check_size(height, width, max_pixels, what)
    channels, depth = ENCODINGS[encoding]
    if encoding in _UYVY + _YUYV and width % 2:
        raise ImageError(f'{what}: YUV 4:2:2 needs an even width')
    row = width * channels * depth
    if step < row:
        raise ImageError(f'{what}: step {step} is smaller than one row '
                         f'({width} px x {channels * depth} bytes = {row}); the header is wrong')
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    buf = buf.reshape(-1).view(np.uint8)
    need = step * height
    if buf.size < need:
        raise ImageError(f'{what}: data has {buf.size} bytes, needs at least {need} '
                         f'(step {step} x height {height}); the message is truncated or its '
                         'header is wrong')
    rows = buf[:step * height].reshape(height, step)[:, :row]
    if depth == 1:
        return np.ascontiguousarray(rows).reshape(height, width, channels)
    dtype = np.dtype('>u2' if is_bigendian else '<u2')
    arr = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    return arr.astype(np.uint16)


def image_to_rgb(height: int, width: int, encoding: str, is_bigendian: bool | int, step: int,
                 data: bytes | bytearray | memoryview | np.ndarray,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A sensor_msgs/Image as ``(H, W, 3)`` uint8 RGB.

    Colour encodings are reordered, alpha dropped, mono replicated, mono16 scaled by ``>> 8``
    and YUV 4:2:2 (``yuv422``/``uyvy`` UYVY, ``yuv422_yuy2``/``yuyv`` YUYV) converted with
    OpenCV (BT.601). Label encodings (8UC1, 16UC1) are refused: they are not pictures.
    """
    if encoding not in RGB_ENCODINGS:
        hint = ' (that is a label encoding; use image_to_labels)' \
            if encoding in LABEL_ENCODINGS else ''
        raise ImageError(f'cannot convert encoding {shown(encoding)} to RGB{hint}; supported: '
                         f'{", ".join(RGB_ENCODINGS)}')
    arr = image_to_array(height, width, encoding, is_bigendian, step, data, max_pixels)
    if encoding == 'rgb8':
        return arr
    if encoding == 'bgr8':
        return np.ascontiguousarray(arr[:, :, ::-1])
    if encoding == 'rgba8':
        return np.ascontiguousarray(arr[:, :, :3])
    if encoding == 'bgra8':
        return np.ascontiguousarray(arr[:, :, 2::-1])
    if encoding in ('mono8', 'mono16'):
        grey = arr[:, :, 0] if encoding == 'mono8' else (arr[:, :, 0] >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    code = cv2.COLOR_YUV2RGB_UYVY if encoding in _UYVY else cv2.COLOR_YUV2RGB_YUYV
    return cv2.cvtColor(arr, code)


def image_to_labels(height: int, width: int, encoding: str, is_bigendian: bool | int,
                    step: int, data: bytes | bytearray | memoryview | np.ndarray,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A class-id sensor_msgs/Image (mono8, 8UC1, mono16, 16UC1) as ``(H, W)`` uint8/uint16."""
    if encoding not in LABEL_ENCODINGS:
        raise ImageError(f'label images must be mono8, 8UC1, mono16 or 16UC1 (one class id '
                         f'per pixel), got {shown(encoding)}')
    return image_to_array(height, width, encoding, is_bigendian, step, data, max_pixels)[:, :, 0]


def _decode_compressed(fmt: str, data: bytes | bytearray | memoryview | np.ndarray,
                       max_pixels: int, flags: int, warnings: list[str] | None = None
                       ) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    buf = buf.reshape(-1).view(np.uint8)
    what = f'CompressedImage ({shown(fmt, quote=False) if fmt else "no format"}, {buf.size} bytes)'
    if buf.size == 0:
        raise ImageError(f'{what} has no data')
    found = read_structure(buf)
    if found is None or found.size is None:
        raise ImageError(f'{what}: data is neither PNG nor JPEG (no valid signature/header); '
                         'only jpeg and png transports are supported')
    width, height = found.size
    _check_size(height, width, max_pixels, what)
    # Damage the structure check finds is reported from here, not by the decoder on stderr:
    # a PNG whose critical chunk fails its CRC never reaches libpng, nor do the ancillary
    # chunks libpng would drop with a warning. (libjpeg still prints its first warning.)
    if found.fatal:
        raise ImageError(f'{what}: could not decode the {width}x{height} image; the data is '
                         f'truncated or corrupt ({found.fatal})')
    img = cv2.imdecode(found.without_stripped(buf), flags)
    if img is None:
        said = f' ({"; ".join(found.warnings)})' if found.warnings else ''
        raise ImageError(f'{what}: could not decode the {width}x{height} image; the data '
                         f'is truncated or corrupt{said}')
    if warnings is not None:
        warnings.extend(found.warnings)
    return img


def compressed_to_rgb(format: str, data: bytes | bytearray | memoryview | np.ndarray,
                      max_pixels: int = DEFAULT_MAX_PIXELS,
                      warnings: list[str] | None = None) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG or PNG, any ``format`` string) as ``(H, W, 3)``
    uint8 RGB. The size in the PNG/JPEG header is checked against ``max_pixels`` before
    decoding. The damage found in a decodable frame's structure (``core.compressed``: stray
    markers, a missing end, bad ancillary CRCs) is appended to ``warnings``, one entry per
    problem, in the decoders' words."""
    img = _decode_compressed(format, data, max_pixels, cv2.IMREAD_COLOR, warnings)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)   # in place: no second frame copy


def compressed_to_labels(format: str, data: bytes | bytearray | memoryview | np.ndarray,
                         max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A single-channel PNG CompressedImage of class ids as ``(H, W)`` uint8/uint16."""
    img = _decode_compressed(format, data, max_pixels, cv2.IMREAD_UNCHANGED, [])
    if img.ndim != 2:
        raise ImageError(f'compressed label image must be single-channel (8 or 16-bit PNG), '
                         f'got shape {img.shape}')
    return img


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = 'rgb8') -> ImageFields:
    """``(height, width, encoding, step, data)`` for an Image holding an ``(H, W, 3)`` uint8
    RGB array as ``rgb8`` or ``bgr8`` (is_bigendian = 0, no row padding)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f'expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}')
    if encoding not in ('rgb8', 'bgr8'):
        raise ImageError(f'encoding must be rgb8 or bgr8, got {shown(encoding)}')
    arr = rgb if encoding == 'rgb8' else rgb[:, :, ::-1]
    h, w = rgb.shape[:2]
    return h, w, encoding, w * 3, np.ascontiguousarray(arr).tobytes()


def labels_to_image_fields(labels: np.ndarray) -> ImageFields:
    """``(height, width, encoding, step, data)`` for a class-id Image: ``mono8`` for uint8,
    ``16UC1`` little-endian (is_bigendian = 0) for uint16."""
    if labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        raise ImageError(f'expected an (H, W) uint8 or uint16 label array, got {labels.shape} '
                         f'{labels.dtype}')
    h, w = labels.shape
    if labels.dtype == np.uint8:
        return h, w, 'mono8', w, np.ascontiguousarray(labels).tobytes()
    return h, w, '16UC1', w * 2, np.ascontiguousarray(labels, dtype='<u2').tobytes()


def rgb_to_compressed(rgb: np.ndarray, fmt: str = 'jpeg', quality: int = 90
                      ) -> tuple[str, bytes]:
    """``(format, data)`` for a CompressedImage of an RGB array, with the format string that
    image_transport's compressed publisher uses (``'rgb8; jpeg compressed bgr8'``)."""
    if fmt not in ('jpeg', 'png'):
        raise ImageError(f'compressed format must be jpeg or png, got {fmt!r}')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, enc = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png',
                           cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageError(f'OpenCV could not encode a {rgb.shape} image as {fmt}')
    return f'rgb8; {fmt} compressed bgr8', enc.tobytes()
