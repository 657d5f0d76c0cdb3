"""Ground grid messages: CameraInfo and depth images in, OccupancyGrid and PointCloud2 out."""
from __future__ import annotations

import array

import numpy as np

from ..core.ground import DEPTH_ENCODINGS, GridSpec, GroundError, Intrinsics

FLOAT32 = 7    # sensor_msgs/PointField.FLOAT32


def intrinsics_from_msg(msg, rectified: bool = False) -> Intrinsics:
    """``Intrinsics`` from a sensor_msgs/CameraInfo (``P`` without distortion if the image is
    rectified)."""
    if msg.binning_x > 1 or msg.binning_y > 1:
        raise GroundError(f'camera_info binning {msg.binning_x}x{msg.binning_y} is not '
                          'supported: publish the camera_info of the binned image')
    if rectified:
        p = list(msg.p)
        return Intrinsics(msg.width, msg.height, (p[0], p[1], p[2], p[4], p[5], p[6], p[8],
                                                  p[9], p[10]))
    return Intrinsics(msg.width, msg.height, tuple(float(v) for v in msg.k),
                      tuple(float(v) for v in msg.d), msg.distortion_model or 'plumb_bob')


def depth_from_msg(msg) -> tuple[np.ndarray, str]:
    """The pixels of a depth sensor_msgs/Image and its encoding (unchecked: the projector
    rejects an encoding or size it cannot use)."""
    dtype = DEPTH_ENCODINGS.get(msg.encoding)
    if dtype is None:
        return np.zeros((msg.height, msg.width), np.uint8), msg.encoding
    dt = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<')
    size = dt.itemsize
    if msg.step < msg.width * size or len(msg.data) < msg.step * msg.height:
        raise GroundError(f'depth image {msg.width}x{msg.height} {msg.encoding} has step '
                          f'{msg.step} and {len(msg.data)} bytes: truncated')
    rows = np.frombuffer(bytes(msg.data), np.uint8)[:msg.step * msg.height]
    img = rows.reshape(msg.height, msg.step)[:, :msg.width * size].copy().view(dt)
    return img.astype(dtype, copy=False), msg.encoding


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def grid_to_msg(grid: GridSpec, values: np.ndarray, header, ground_z: float):
    """A nav_msgs/OccupancyGrid of int8 cell values (row-major, -1 unknown)."""
    from nav_msgs.msg import OccupancyGrid
    msg = OccupancyGrid()
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(grid.resolution)
    msg.info.width, msg.info.height = grid.width, grid.height
    msg.info.origin.position.x = float(grid.origin_x)
    msg.info.origin.position.y = float(grid.origin_y)
    msg.info.origin.position.z = float(ground_z)
    msg.data = array.array('b', values.astype(np.int8).tobytes())
    return msg


def points_to_msg(points: np.ndarray, header):
    """A sensor_msgs/PointCloud2 of x, y, z FLOAT32 points (N x 3)."""
    from sensor_msgs.msg import PointCloud2, PointField
    pts = np.ascontiguousarray(points, dtype='<f4').reshape(-1, 3)
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, pts.shape[0]
    msg.fields = [PointField(name=n, offset=4 * i, datatype=FLOAT32, count=1)
                  for i, n in enumerate('xyz')]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = 12, 12 * pts.shape[0]
    msg.data = pts.tobytes()
    msg.is_dense = True
    return msg
