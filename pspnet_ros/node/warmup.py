"""Warm-up: the node's whole frame path once, on a synthetic frame, before the first camera
frame is timed."""
from __future__ import annotations

import time

import numpy as np
from std_msgs.msg import Header

from .publishing import publish


class _Discard:
    """A publisher stand-in: the message is built (encoding warmed up) and dropped."""

    def publish(self, msg) -> None:
        pass


class _Sink:
    """What ``inference.publish`` reads of a camera, with publishers that discard."""

    def __init__(self):
        names = ('mask', 'color_mask', 'overlay', 'confidence', 'occupancy')
        self.pubs = {name: _Discard() for name in names}
        self.camera_info = None


def synthetic_frame(h: int, w: int) -> np.ndarray:
    """An RGB frame with some structure (bands and a gradient), so every stage does real
    work (a constant frame can take short cuts)."""
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    frame = np.empty((h, w, 3), np.uint8)
    frame[..., 0] = (y * 0.7 + x * 0.3).astype(np.uint8)
    frame[..., 1] = ((y + x) * 0.5).astype(np.uint8)
    frame[..., 2] = (255 - y).astype(np.uint8)
    return frame


def warm_up(seg, cfg, size: tuple[int, int] | None = None) -> float:
    """Run one synthetic frame of ``size`` (default: the network input size) through the
    whole path the node runs per frame: conversion, preprocessing, inference, postprocessing
    (which loads torch for a TFLite or ONNX model's logits), occupancy, colour mask, overlay,
    confidence if published, and the encoding of every output message. Returns its seconds.

    Measured without it (2026-12-07, int8 TFLite, 1280x720 frames): the first frame took
    3.7 s end to end against a median of 0.15 s, nearly all of it torch's first import.
    """
    h, w = size or tuple(seg.input_size)
    if h * w > seg.max_pixels:
        # Frames are refused above max_image_pixels: warm up with the largest one allowed
        # (the network still runs at its input size).
        scale = (seg.max_pixels / (h * w)) ** 0.5
        h, w = max(1, int(h * scale)), max(1, int(w * scale))
    frame = synthetic_frame(h, w)
    want = {'mask': True, 'color_mask': True, 'overlay': True, 'occupancy': True,
            'confidence': bool(cfg.publish_confidence), 'camera_info': False}
    t0 = time.perf_counter()
    (res,) = seg.segment_batch([frame], confidence=want['confidence'], occupancy=True,
                               regions=cfg.regions)
    publish(_Sink(), Header(), frame, want, res, seg, cfg)
    return time.perf_counter() - t0
