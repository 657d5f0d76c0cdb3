"""The segmentation node with the ground grid on, in its own process over real DDS: two cameras
into one fused OccupancyGrid and a PointCloud2, with nobody subscribed to the masks.

Both cameras see the same CamVid val frame through the same assumed intrinsics (fx = fy = 420,
480x360), 1.2 m up and level; the front one looks along base +x, the rear one along -x. Each
sees road from about 1.2 * 420 / 180 = 2.8 m out, so the fused grid has drivable cells ahead
and behind, which neither camera alone gives.
"""
import math

import numpy as np
import pytest

from ros_fixtures import DOMAIN, PARAMS

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.usefixtures('rclpy_context')]

from conftest import CAMVID  # noqa: E402
from pspnet_ros.live import spin_until as live_spin_until  # noqa: E402

NODE = 'pspnet_ground'
FRAME = '0016E5_07959.png'
PROFILE = f"""/**:
  ros__parameters:
    cameras: [front, rear]
    publish_color_mask: false
    publish_overlay: false
    ground_enabled: true
    ground_camera_poses: ['front:0,0,1.2,0,0,0', 'rear:0,0,1.2,0,0,{math.pi}']
    ground_sync_tolerance: 0.2
"""


def image_msg(rgb: np.ndarray, sec: int, frame: str):
    from sensor_msgs.msg import Image
    h, w, _ = rgb.shape
    msg = Image(height=h, width=w, encoding='rgb8', is_bigendian=0, step=3 * w)
    msg.header.frame_id = frame
    msg.header.stamp.sec = sec
    msg.data = rgb.tobytes()
    return msg


def info_msg(frame: str):
    from sensor_msgs.msg import CameraInfo
    msg = CameraInfo(width=480, height=360, distortion_model='plumb_bob')
    msg.header.frame_id = frame
    msg.k = [420.0, 0.0, 239.5, 0.0, 420.0, 179.5, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    return msg


def test_two_cameras_into_one_fused_grid_and_cloud_over_dds(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import OccupancyGrid
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from pspnet_ros.core import read_image
    from pspnet_ros.live import start_node, stop_node
    path = CAMVID / 'val' / FRAME
    if not path.exists():
        pytest.skip(f'{path} is not present (shared CamVid data)')
    rgb = read_image(path)
    profile = tmp_path / 'ground.yaml'
    profile.write_text(PROFILE)
    log = tmp_path / 'node.log'
    proc = start_node(PARAMS, DOMAIN, ['-r', f'__node:={NODE}', '--params-file', str(profile)],
                      log)
    peer = Node('ground_test_peer')
    ex = SingleThreadedExecutor()
    ex.add_node(peer)
    got = {'drivable': [], 'obstacle_points': [], 'diag': []}
    latched = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_subscription(OccupancyGrid, f'/{NODE}/ground/drivable',
                             got['drivable'].append, latched)
    peer.create_subscription(PointCloud2, f'/{NODE}/ground/obstacle_points',
                             got['obstacle_points'].append, latched)
    peer.create_subscription(DiagnosticArray, '/diagnostics', got['diag'].append, 10)
    images = {c: peer.create_publisher(Image, f'{c}/image', qos_profile_sensor_data)
              for c in ('front', 'rear')}
    infos = {c: peer.create_publisher(CameraInfo, f'{c}/camera_info', 10)
             for c in ('front', 'rear')}

    def spin_until(cond, timeout):
        return live_spin_until(ex, cond, timeout, step=0.05)
    try:
        assert spin_until(lambda: all(p.get_subscription_count() for p in images.values())
                          and all(p.get_subscription_count() for p in infos.values()), 180), \
            'node did not come up:\n' + log.read_text()
        assert spin_until(lambda: peer.count_publishers(f'/{NODE}/ground/drivable') > 0, 30)
        for sec in range(100, 110):           # a few frames: the first may meet no info yet
            for cam in ('front', 'rear'):
                infos[cam].publish(info_msg(f'{cam}_optical'))
            spin_until(lambda: False, 0.2)
            for cam in ('front', 'rear'):
                images[cam].publish(image_msg(rgb, sec, f'{cam}_optical'))
            if spin_until(lambda: got['drivable'] and got['obstacle_points'], 5.0):
                grid = got['drivable'][-1]
                d = np.asarray(grid.data, np.int8).reshape(grid.info.height, grid.info.width)
                if (d[:, 130:] == 0).any() and (d[:, :70] == 0).any():
                    break
        assert got['drivable'], 'no grid:\n' + log.read_text()
        grid, cloud = got['drivable'][-1], got['obstacle_points'][-1]
        assert grid.header.frame_id == 'base_link' and cloud.header.frame_id == 'base_link'
        assert 100 <= grid.header.stamp.sec < 110 and grid.header.stamp.nanosec == 0
        d = np.asarray(grid.data, np.int8).reshape(200, 200)
        # drivable road both ahead (x >= 3 m: columns 130..) and behind (x <= -3 m: ..69):
        # the fused grid holds both cameras
        assert (d[:, 130:] == 0).sum() > 500 and (d[:, :70] == 0).sum() > 500
        assert (d[:, 72:128] == -1).all()         # |x| < 2.8 m: under the cameras' view
        assert cloud.width > 0 and cloud.point_step == 12
        pts = np.frombuffer(bytes(cloud.data), '<f4').reshape(-1, 3)
        assert np.allclose(pts[:, 2], 0.0, atol=1e-4)     # footprints lie on the ground

        def ground_values() -> dict:
            found = [s for a in got['diag'] for s in a.status if s.name.endswith(': ground')]
            return {kv.key: kv.value for kv in found[-1].values} if found else {}
        # the status of a diagnostics period after the grids went out
        assert spin_until(lambda: int(ground_values().get('ground.frames_projected', 0)) >= 2,
                          10), ground_values()
        values = ground_values()
        assert values['ground.front.pose_source'] == 'parameters'
        assert 'pose from parameters' in log.read_text()
    finally:
        stop_node(proc)
        ex.remove_node(peer)
        peer.destroy_node()
