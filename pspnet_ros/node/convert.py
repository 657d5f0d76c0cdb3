"""rclpy message <-> numpy conversion for the node, on top of the ROS-free ``core.rosimage``.

cv_bridge's Python side is not installable from pip, so the node converts with numpy/OpenCV;
where cv_bridge exists a test checks both give identical arrays.
"""
from __future__ import annotations

import json
import struct

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import String

from ..core import occupancy_msg, rosimage
from ..core.segmenter import Occupancy


def image_from_msg(msg, max_pixels: int, warnings: list[str] | None = None) -> np.ndarray:
    """RGB uint8 array from an Image or CompressedImage; ``ImageError`` on bad frames. What
    the decoder says about a damaged but decodable frame goes to ``warnings``."""
    if isinstance(msg, CompressedImage):
        return rosimage.compressed_to_rgb(msg.format, bytes(msg.data), max_pixels=max_pixels,
                                          warnings=warnings)
    return rosimage.image_to_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian,
                                 msg.step, bytes(msg.data), max_pixels=max_pixels)


def _image(fields, header) -> Image:
    h, w, encoding, step, data = fields
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=step)
    msg.header = header
    msg.data = data
    return msg


def labels_to_msg(labels: np.ndarray, header) -> Image:
    """mono8 (or 16UC1 for more than 255 classes) mask with the input header."""
    return _image(rosimage.labels_to_image_fields(labels), header)


def rgb_to_msg(rgb: np.ndarray, header) -> Image:
    return _image(rosimage.rgb_to_image_fields(rgb), header)


def float_to_msg(values: np.ndarray, header) -> Image:
    """32FC1 image (little endian) with the input header."""
    v = np.ascontiguousarray(values, dtype='<f4')
    msg = Image(height=v.shape[0], width=v.shape[1], encoding='32FC1', is_bigendian=0,
                step=v.shape[1] * 4)
    msg.header = header
    msg.data = v.tobytes()
    return msg


def occupancy_to_msg(occ: Occupancy, class_names, regions: dict, header) -> PointCloud2:
    """Occupancy as PointCloud2: point 0 the whole frame, then one point per region in
    ``regions`` order (layout: ``pspnet_ros.core.occupancy_msg``, docs/ROS_INTERFACE.md)."""
    layout = occupancy_msg.encode_segmenter_occupancy(list(class_names), occ, regions)
    msg = PointCloud2()
    msg.header = header
    msg.height = layout.height
    msg.width = layout.width
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                  for f in layout.fields]
    msg.is_bigendian = False
    msg.point_step = layout.point_step
    msg.row_step = layout.row_step
    msg.data = layout.data
    msg.is_dense = True
    return msg


def error_kind(exc: Exception) -> str:
    """A short diagnostics key for a rejected frame."""
    kind = getattr(exc, 'kind', None)
    if kind:
        return str(kind)
    text = str(exc).lower()
    for key, name in (('could not decode', 'corrupt_compressed'),
                      ('neither png nor jpeg', 'corrupt_compressed'),
                      ('has no data', 'empty_data'), ('zero size', 'zero_size'),
                      ('over the limit', 'too_large'), ('smaller than one row', 'bad_step'),
                      ('truncated', 'truncated_data'), ('encoding', 'unsupported_encoding')):
        if key in text:
            return name
    return 'bad_image'


def cdr_stamp(raw: bytes) -> float:
    """Header stamp (seconds) of a serialized message that starts with a std_msgs/Header
    (Image, CompressedImage), read without deserializing it; 0.0 if ``raw`` is too short.

    CDR: 4 bytes of encapsulation (byte 1 is 1 for little endian), then ``stamp.sec`` (int32)
    and ``stamp.nanosec`` (uint32).
    """
    if len(raw) < 12:
        return 0.0
    sec, nanosec = struct.unpack('<iI' if raw[1] & 1 else '>iI', raw[4:12])
    return sec + nanosec * 1e-9


def status_to_msg(st) -> DiagnosticStatus:
    """A ``diagnostics.Status`` as a diagnostic_msgs/DiagnosticStatus."""
    msg = DiagnosticStatus()
    msg.name = st.name
    msg.hardware_id = st.hardware_id
    msg.level = bytes([st.level])
    msg.message = st.message
    msg.values = [KeyValue(key=k, value=v) for k, v in st.values.items()]
    return msg


def label_info_msg(seg, regions: dict) -> String:
    """The ``~/label_info`` JSON of a segmenter: label set, model, classes with their colours
    and the occupancy regions."""
    pal = seg.palette.tolist()
    info = {'label_set': seg.labelset.name, 'model': seg.card.name,
            'ignore_index': seg.labelset.ignore_index,
            'classes': [{'id': i, 'name': n, 'color': pal[i]}
                        for i, n in enumerate(seg.class_names)],
            # ~/occupancy point 0 is the whole frame, point i the i-th region here.
            'occupancy_regions': [{'name': n, 'box': list(b)} for n, b in regions.items()]}
    return String(data=json.dumps(info))
