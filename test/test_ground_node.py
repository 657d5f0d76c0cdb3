"""The ROS side of the ground grid (node/ground.py) over real DDS: two cameras into one fused
OccupancyGrid and PointCloud2, lazy when nobody subscribes, and bad input reported, not
published.

Cameras as in test_ground.py: 160x120, fx = fy = 100, principal point (79.5, 59.5), 1 m up,
level. The front camera looks along base +x and sees a pedestrian box whose front face is at
X = 5 m; the rear camera (yaw 180 degrees) looks along -x and sees only road.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from pspnet_ros.core.ground import GroundError
from pspnet_ros.core.labels import CAMVID
from pspnet_ros.node.ground import (ground_config, GROUND_PARAMETERS, GroundGrid,
                                    intrinsics_from_msg)

pytestmark = pytest.mark.ros
EXAMPLE = Path(__file__).resolve().parents[1] / 'config' / 'ground_grid.yaml'

W, H = 160, 120
ROAD, SKY, PEDESTRIAN = (CAMVID.classes.index(n) for n in ('road', 'sky', 'pedestrian'))
FRONT_POSE = 'front:0,0,1,0,0,0'
REAR_POSE = f'rear:0,0,1,0,0,{math.pi}'


def params(**over):
    p = {k: v for k, (v, _) in GROUND_PARAMETERS.items()}
    p.update({'ground_enabled': True, 'ground_camera_poses': [FRONT_POSE, REAR_POSE]})
    p.update(over)
    return p


def road_labels(box: bool) -> np.ndarray:
    labels = np.full((H, W), SKY, np.uint8)
    labels[60:] = ROAD
    if box:
        labels[50:80, 70:90] = PEDESTRIAN
    return labels


def camera_info(frame: str):
    from sensor_msgs.msg import CameraInfo
    msg = CameraInfo()
    msg.header.frame_id = frame
    msg.width, msg.height = W, H
    msg.k = [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    msg.distortion_model = 'plumb_bob'
    return msg


def header(sec: int, nanosec: int, frame: str):
    from std_msgs.msg import Header
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


class Rig:
    """A node holding a GroundGrid for cameras front and rear, a camera_info publisher and a
    listener of the fused outputs, spun together."""

    def __init__(self, name: str, cameras=('front', 'rear'), **over):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        self.node = Node(name)
        cfg = ground_config(params(**over), CAMVID, list(cameras))
        self.grid = GroundGrid(self.node, cfg, [
            (c, c, (lambda base, c=c: f'{c}/{base}'), (lambda base, c=c: f'~/{c}/{base}'))
            for c in cameras])
        self.grid.make_publishers()
        self.grid.subscribe()
        self.peer = Node(name + '_peer')
        self.info_pubs = {c: self.peer.create_publisher(
            type(camera_info('')), f'{c}/camera_info', 10) for c in cameras}
        self.got: dict[str, list] = {}
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)
        self.rclpy = rclpy

    def listen(self, topic: str, typ) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.got[topic] = []
        self.peer.create_subscription(typ, f'/{self.node.get_name()}/{topic}',
                                      lambda m: self.got[topic].append(m), qos)

    def spin_until(self, cond, timeout=20.0) -> bool:
        from pspnet_ros.live import spin_until
        return spin_until(self.ex, cond, timeout, step=0.05)

    def ready(self, cameras=('front', 'rear')) -> None:
        """Wait until something listens to a ground output, then send each camera_info."""
        assert self.spin_until(lambda: self.grid.wanted())
        self.send_info(list(cameras))

    def front_and_rear(self, rear_nanosec: int, front_box: bool) -> None:
        """A frame of each camera at 10 s, the rear one ``rear_nanosec`` later; both grid."""
        assert self.grid.on_frame('front', header(10, 0, 'front_optical'),
                                  road_labels(front_box))
        assert self.grid.on_frame('rear', header(10, rear_nanosec, 'rear_optical'),
                                  road_labels(False))

    def send_info(self, cameras) -> None:
        for c in cameras:
            self.info_pubs[c].publish(camera_info(f'{c}_optical'))
        assert self.spin_until(lambda: all(self.grid.cams[c].info is not None
                                           for c in cameras)), 'camera_info did not arrive'

    def close(self) -> None:
        self.grid.release()
        self.ex.remove_node(self.node)
        self.ex.remove_node(self.peer)
        self.node.destroy_node()
        self.peer.destroy_node()


def test_two_cameras_publish_one_fused_grid_and_cloud(rclpy_context):
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import PointCloud2
    rig = Rig('ground_two_cameras')
    try:
        # nobody listens yet: nothing is computed
        assert not rig.grid.on_frame('front', header(5, 0, 'front_optical'), road_labels(True))
        assert rig.grid.counts['frames_skipped'] == 1
        rig.listen('ground/drivable', OccupancyGrid)
        rig.listen('ground/obstacle', OccupancyGrid)
        rig.listen('ground/obstacle_points', PointCloud2)
        rig.ready()
        rig.front_and_rear(20_000_000, front_box=True)
        assert rig.spin_until(lambda: all(len(v) >= 2 for v in rig.got.values()))
        drivable = rig.got['ground/drivable'][-1]
        obstacle = rig.got['ground/obstacle'][-1]
        cloud = rig.got['ground/obstacle_points'][-1]
        for msg in (drivable, obstacle, cloud):
            assert msg.header.frame_id == 'base_link'
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (10, 20_000_000)
        assert (drivable.info.width, drivable.info.height) == (200, 200)
        assert drivable.info.resolution == pytest.approx(0.1)
        assert (drivable.info.origin.position.x, drivable.info.origin.position.y) == (-10, -10)
        d = np.asarray(drivable.data, np.int8).reshape(200, 200)
        o = np.asarray(obstacle.data, np.int8).reshape(200, 200)

        def at(grid, x, y):
            return grid[int(math.floor((y + 10) / 0.1)), int(math.floor((x + 10) / 0.1))]
        # road seen by both cameras: drivable (cost 0) ahead and behind; no camera sees
        # the sides (|y| > 0.8 |x|) or under the robot (|x| < 1.6)
        assert at(d, 3.05, 0.05) == 0 and at(d, -3.05, 0.05) == 0
        assert at(d, 0.05, 5.05) == -1 and at(d, 1.05, 0.05) == -1
        # the box: obstacle cost 100 at its footprint X = 5, unknown behind it, free before
        assert at(o, 5.05, 0.05) == 100 or at(o, 4.95, 0.05) == 100
        assert at(o, 7.05, 0.05) == -1
        assert at(o, 4.05, 0.05) == 0 and at(o, -4.85, 0.05) == 0    # row 80: X = 4.878
        assert at(d, 5.05, 0.05) == 100            # the footprint cell is not drivable
        pts = np.frombuffer(bytes(cloud.data), '<f4').reshape(-1, 3)
        assert cloud.width == 20 and cloud.point_step == 12
        np.testing.assert_allclose(pts[:, 0], 5.0, atol=1e-3)
        # per-camera outputs exist too
        names = dict(rig.node.get_publisher_names_and_types_by_node(rig.node.get_name(), ''))
        assert '/ground_two_cameras/front/ground/drivable' in names
        assert '/ground_two_cameras/rear/ground/obstacle_points' in names
    finally:
        rig.close()


def test_the_fused_grid_leaves_out_a_camera_outside_the_sync_tolerance(rclpy_context):
    from nav_msgs.msg import OccupancyGrid
    rig = Rig('ground_sync', **{'ground_sync_tolerance': 0.05})
    try:
        rig.listen('ground/drivable', OccupancyGrid)
        rig.ready()
        rig.front_and_rear(200_000_000, front_box=False)
        assert rig.spin_until(lambda: len(rig.got['ground/drivable']) >= 2)
        d = np.asarray(rig.got['ground/drivable'][-1].data, np.int8).reshape(200, 200)
        assert d[100, 69] == 0            # x = -3.05, y = 0.05: the rear camera (this frame)
        assert d[100, 130] == -1          # x = 3.05: the front camera's frame is 0.2 s older
    finally:
        rig.close()


def test_bad_input_gives_a_status_and_no_grid(rclpy_context):
    from nav_msgs.msg import OccupancyGrid
    rig = Rig('ground_bad', **{'ground_camera_poses': [FRONT_POSE, 'rear:0,0,1,0,-1.0,0']})
    try:
        rig.listen('ground/drivable', OccupancyGrid)
        assert rig.spin_until(lambda: rig.grid.wanted())
        # no camera_info yet: WARN, no grid
        assert not rig.grid.on_frame('front', header(1, 0, 'front_optical'), road_labels(True))
        level, text = rig.grid.status()
        assert level == 1 and 'no camera_info received on front/camera_info yet' in text
        # the rear camera looks 1 rad up: ERROR naming the pose, no grid
        rig.send_info(['front', 'rear'])
        assert not rig.grid.on_frame('rear', header(2, 0, 'rear_optical'), road_labels(False))
        level, text = rig.grid.status()
        assert level == 2 and 'rear: no pixel of the camera sees the grid' in text
        assert rig.grid.values()['ground.rear.error'].startswith('no pixel of the camera')
        rig.spin_until(lambda: False, 0.5)
        assert rig.got['ground/drivable'] == []
        assert rig.grid.counts['frames_failed'] == 2
    finally:
        rig.close()


def test_depth_of_another_size_or_encoding_or_stamp_gives_no_grid(rclpy_context):
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import Image
    rig = Rig('ground_depth', cameras=('front',), **{
        'ground_camera_poses': [FRONT_POSE], 'ground_use_depth': True})
    try:
        rig.listen('ground/obstacle', OccupancyGrid)
        pub = rig.peer.create_publisher(Image, 'front/depth/image', 10)
        assert rig.spin_until(lambda: rig.grid.wanted() and pub.get_subscription_count() > 0)
        rig.send_info(['front'])

        def send_depth(sec, depth, encoding):
            msg = Image(header=header(sec, 0, 'front_optical'), height=depth.shape[0],
                        width=depth.shape[1], encoding=encoding, is_bigendian=0,
                        step=depth.shape[1] * depth.itemsize)
            msg.data = depth.tobytes()
            pub.publish(msg)
            before = rig.grid.cams['front'].pairer._depth
            assert rig.spin_until(lambda: any(s == sec * 10**9 for s, *_ in before))

        box = np.zeros((H, W), np.float32)
        box[60:] = 100 / (np.arange(60, H) - 59.5)[:, None]
        box[50:80, 70:90] = 5.0
        send_depth(1, box[:, :100].copy(), '32FC1')           # another size
        assert not rig.grid.on_frame('front', header(1, 0, 'front_optical'), road_labels(True))
        assert 'must be aligned' in rig.grid.status()[1]
        send_depth(2, box.astype(np.float64), '64FC1')        # another encoding
        assert not rig.grid.on_frame('front', header(2, 0, 'front_optical'), road_labels(True))
        assert "depth encoding '64FC1' is not supported" in rig.grid.status()[1]
        assert not rig.grid.on_frame('front', header(3, 0, 'front_optical'), road_labels(True))
        assert 'no depth image on front/depth/image stamped exactly' in rig.grid.status()[1]
        assert rig.grid.values()['ground.depth_unmatched'] == '1'
        rig.spin_until(lambda: False, 0.3)
        assert rig.got['ground/obstacle'] == []
        # a good one: millimetres, the box lands at X = 5 with every pixel in the band
        send_depth(4, np.round(box * 1000).astype(np.uint16), '16UC1')
        assert rig.grid.on_frame('front', header(4, 0, 'front_optical'), road_labels(True))
        assert rig.spin_until(lambda: rig.got['ground/obstacle'])
        o = np.asarray(rig.got['ground/obstacle'][-1].data, np.int8).reshape(200, 200)
        rows, cols = np.nonzero(o == 100)
        assert set(cols) == {150}                 # x in [5.0, 5.1)
        assert set(rows) == set(range(95, 105))   # y in [-0.5, 0.5)
        assert rig.grid.status()[0] == 0
    finally:
        rig.close()


@pytest.mark.parametrize('name, value, match', [
    ('ground_camera_poses', ['side:0,0,1,0,0,0'], "camera 'side' is not one of the cameras"),
    ('ground_camera_poses', ['front:0,0,1'], 'expected six numbers'),
    ('ground_groups', ['drivable:road,grass'], "class 'grass' is not in label set 'camvid'"),
    ('ground_group_costs', ['drivable:0,300'], 'ground_group_costs entry'),
])
def test_config_errors_name_the_parameter(name, value, match):
    with pytest.raises(ValueError, match=match):
        ground_config(params(**{name: value}), CAMVID, ['front', 'rear'])


def test_config_off_and_one_unnamed_camera():
    assert ground_config({'ground_enabled': False}, CAMVID, ['']) is None
    cfg = ground_config(params(**{'ground_camera_poses': ['0.2,0,1.1,0,0.1,0']}), CAMVID, [''])
    assert cfg.poses == {'': (0.2, 0.0, 1.1, 0.0, 0.1, 0.0)}
    assert cfg.costs == {'drivable': (0, 100), 'obstacle': (100, 0)}


def test_rectified_camera_info_uses_p_without_distortion():
    msg = camera_info('x')
    msg.d = [-0.3, 0.1, 0, 0, 0]
    msg.p = [90.0, 0, 80.0, 0, 0, 90.0, 60.0, 0, 0, 0, 1, 0]
    intr = intrinsics_from_msg(msg, rectified=True)
    assert intr.k == (90.0, 0, 80.0, 0, 90.0, 60.0, 0, 0, 1) and not any(intr.d)
    assert intrinsics_from_msg(msg).d == (-0.3, 0.1, 0, 0, 0)


def test_pose_from_tf_where_tf2_ros_exists(rclpy_context):
    tf2_ros = pytest.importorskip(
        'tf2_ros', reason='tf2_ros is not on PyPI; the TF pose path runs in a ROS install')
    from geometry_msgs.msg import TransformStamped
    from nav_msgs.msg import OccupancyGrid
    rig = Rig('ground_tf', cameras=('front',), **{'ground_camera_poses': [],
                                                  'ground_pose_source': 'tf'})
    try:
        assert rig.grid.cams['front'].source == 'tf'
        tf = TransformStamped()
        tf.header.frame_id, tf.child_frame_id = 'base_link', 'front_optical'
        tf.transform.translation.z = 1.0
        # optical frame of a level camera looking along +x: quaternion of BODY_FROM_OPTICAL
        tf.transform.rotation.x, tf.transform.rotation.y = -0.5, 0.5
        tf.transform.rotation.z, tf.transform.rotation.w = -0.5, 0.5
        tf2_ros.StaticTransformBroadcaster(rig.peer).sendTransform(tf)
        rig.listen('ground/obstacle', OccupancyGrid)
        rig.ready(['front'])
        ok = rig.spin_until(lambda: rig.grid.on_frame(
            'front', header(10, 0, 'front_optical'), road_labels(True)), 10)
        assert ok, rig.grid.status()
        assert rig.spin_until(lambda: rig.got['ground/obstacle'])
        o = np.asarray(rig.got['ground/obstacle'][-1].data, np.int8).reshape(200, 200)
        assert set(np.nonzero(o == 100)[1]) <= {149, 150}
    finally:
        rig.close()


def test_the_example_config_names_every_ground_parameter_and_parses():
    flat = {k: v for k, v in yaml.safe_load(EXAMPLE.read_text())['/**']['ros__parameters']
            .items() if k.startswith('ground_')}
    assert set(flat) == set(GROUND_PARAMETERS)
    cfg = ground_config(flat, CAMVID, [''])
    assert cfg.poses == {'': (0.0, 0.0, 1.2, 0.0, 0.0, 0.0)}
    assert cfg.grid.width == cfg.grid.height == 200 and cfg.grid.origin_x == -10.0
    assert set(cfg.roles.groups) == {'drivable', 'obstacle'}
    assert cfg.costs == {'drivable': (0, 100), 'obstacle': (100, 0)}
    assert cfg.height_band == (0.05, 2.0)


def test_depth_from_msg_honours_step_padding_and_byte_order():
    from sensor_msgs.msg import Image
    from pspnet_ros.node.ground import depth_from_msg
    depth = np.array([[1000, 2000, 3000], [4000, 0, 65535]], np.uint16)
    msg = Image(height=2, width=3, encoding='16UC1', is_bigendian=1, step=8)  # 2 bytes padding
    msg.data = b''.join(row.astype('>u2').tobytes() + b'\xff\xff' for row in depth)
    got, enc = depth_from_msg(msg)
    assert enc == '16UC1' and got.dtype == np.uint16
    np.testing.assert_array_equal(got, depth)
    msg.step = 4                      # shorter than a row: an error, not a misread image
    with pytest.raises(GroundError, match='truncated'):
        depth_from_msg(msg)
