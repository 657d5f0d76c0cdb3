"""Build a labelled ROS 2 bag (image + label topics, same headers) from image/label folders."""
from __future__ import annotations

import os
from pathlib import Path
import shutil

from ..core.data import find_pairs
from ..core.image import read_image, read_label
from ..core.rosimage import rgb_to_compressed, rgb_to_image_fields
from . import DEFAULT_START_STAMP
from .bagio import BagWriter, compressed_msg, image_msg, make_header


def make_bag(images: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike,
             rate: float = 10.0, compressed: bool = False, storage: str = 'sqlite3',
             image_topic: str = '/camera/image_raw', label_topic: str = '/camera/labels',
             frame_id: str = 'camera', limit: int | None = None,
             start_stamp: float = DEFAULT_START_STAMP) -> dict:
    """Write image/label pairs (paired by file stem, sorted by name) to a new bag ``out``.

    Frame i gets header stamp ``start_stamp + i / rate`` seconds and ``frame_id``; its label
    (sensor_msgs/Image mono8, or 16UC1 for 16-bit labels) carries the same header. Images are
    sensor_msgs/Image rgb8, or CompressedImage JPEG on ``<image_topic>/compressed`` style
    topics when ``compressed``. Bag receive times equal the stamps. Returns a summary.
    """
    if rate <= 0:
        raise ValueError(f'rate must be > 0 Hz, got {rate}')
    if limit is not None and limit < 1:
        raise ValueError(f'limit must be >= 1, got {limit}')
    pairs = find_pairs(images, labels)[:limit]
    start_ns = int(round(start_stamp * 1e9))
    period_ns = int(round(1e9 / rate))
    created = not Path(out).exists()
    try:
        with BagWriter(out, storage) as bag:
            ts = bag.ts
            for i, (ip, lp) in enumerate(pairs):
                rgb, lab = read_image(ip), read_label(lp)
                if rgb.shape[:2] != lab.shape:
                    raise ValueError(f'{ip.name}: image {rgb.shape[1]}x{rgb.shape[0]} and '
                                     f'label {lab.shape[1]}x{lab.shape[0]} differ')
                stamp = start_ns + i * period_ns
                header = make_header(ts, stamp, frame_id)
                if compressed:
                    fmt, data = rgb_to_compressed(rgb, 'jpeg')
                    bag.write(image_topic, compressed_msg(ts, header, fmt, data), stamp)
                else:
                    bag.write(image_topic, image_msg(ts, header, rgb_to_image_fields(rgb)),
                              stamp)
                bag.write_labels(label_topic, header, lab, stamp)
    except BaseException:
        if created:             # a failed run leaves no half-written bag behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return {'bag': str(out), 'storage': storage, 'frames': len(pairs),
            'image_topic': image_topic, 'label_topic': label_topic,
            'image_type': 'sensor_msgs/msg/CompressedImage' if compressed
            else 'sensor_msgs/msg/Image',
            'first_stamp_ns': start_ns, 'last_stamp_ns': start_ns + (len(pairs) - 1) * period_ns,
            'rate_hz': rate, 'files': [p.name for p, _ in pairs]}
