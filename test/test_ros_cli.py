"""The installed package driven with the real ros2 CLI: launch, lifecycle, param, topic, run.

Needs the ros2 CLI and pspnet_ros installed in an ament prefix, i.e. a colcon workspace:
``make test-ros`` runs it (``colcon test``). In the plain venv of ``make test`` it skips.
"""
import os
from pathlib import Path
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import yaml

from ros_fixtures import DOMAIN

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.ros_install]

NODE = '/pspnet_segmentation'
IMAGE_TOPIC = '/cli_test/image_raw'


def _installed_share() -> Path:
    if shutil.which('ros2') is None:
        pytest.skip('the ros2 CLI is not installed (a ROS 2 install or make test-ros)')
    index = pytest.importorskip('ament_index_python.packages', reason='no ament_index_python')
    try:
        share = Path(index.get_package_share_directory('pspnet_ros'))
    except (index.PackageNotFoundError, ValueError):
        pytest.skip('pspnet_ros is not installed in an ament prefix (colcon build; '
                    'make test-ros)')
    if not (share / 'launch' / 'segment.launch.py').exists():
        pytest.skip(f'{share} has no launch/segment.launch.py (editable install?)')
    return share


@pytest.fixture(scope='module')
def share() -> Path:
    return _installed_share()


def _env() -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED='1')
    return env


def ros2(*args, timeout=60.0, tries=5) -> subprocess.CompletedProcess:
    # Without the daemon each call discovers the graph afresh: on a loaded machine a running
    # node can be missed ('Node not found'), so that answer is asked again a few times.
    for _ in range(tries):
        proc = subprocess.run(['ros2', *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, env=_env())
        if 'Node not found' not in proc.stderr:
            break
        time.sleep(1.0)
    return proc


class Launched:
    """``ros2 launch pspnet_ros segment.launch.py ...`` in its own process group."""

    def __init__(self, tmp: Path, *launch_args: str, node: str = NODE):
        self.node = node
        self.log = tmp / f'launch_{time.monotonic_ns()}.log'
        self.proc = subprocess.Popen(
            ['ros2', 'launch', 'pspnet_ros', 'segment.launch.py', *launch_args],
            stdout=open(self.log, 'w'), stderr=subprocess.STDOUT, env=_env(),
            start_new_session=True)

    def wait_active(self, timeout=180.0) -> str:
        deadline = time.monotonic() + timeout
        state = ''
        while time.monotonic() < deadline and self.proc.poll() is None:
            proc = ros2('lifecycle', 'get', self.node, '--no-daemon', timeout=30, tries=1)
            state = proc.stdout.strip()
            if state.startswith('active'):
                return state
            time.sleep(1.0)
        raise AssertionError(f'{self.node} not active (last: {state!r}); launch log:\n'
                             + self.log.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            # SIGINT to ros2 launch, which forwards it to the node (as launch_testing does).
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class FramePublisher:
    """Publishes a street-like 480x360 frame on IMAGE_TOPIC at ``rate`` Hz from a thread."""

    def __init__(self, rclpy, rate=5.0):
        from pspnet_ros.live import LiveClient
        self.client = LiveClient(image_topic=IMAGE_TOPIC, outputs=(),
                                 name='pspnet_cli_test_camera')
        img = np.zeros((360, 480, 3), np.uint8)
        img[:150], img[150:] = (140, 160, 200), (90, 80, 90)
        self.img, self.period, self.sent = img, 1.0 / rate, 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.client.publish(self.client.make_image(self.img, time.time_ns()))
            self.sent += 1
            self._stop.wait(self.period)

    def close(self):
        self._stop.set()
        self.thread.join()
        self.client.destroy_node()


@pytest.fixture(scope='module')
def launched(share, rclpy_context, tmp_path_factory):
    run = Launched(tmp_path_factory.mktemp('launch'), f'image_topic:={IMAGE_TOPIC}')
    try:
        run.wait_active()
        camera = FramePublisher(rclpy_context)
    except BaseException:
        run.stop()
        raise
    yield run
    camera.close()
    code = run.stop()
    log = run.log.read_text()
    assert code == 0, f'ros2 launch exited {code}:\n{log}'
    assert 'Traceback' not in log, log


def test_lifecycle_get_reports_the_launched_node_active(launched):
    proc = ros2('lifecycle', 'get', NODE, '--no-daemon')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'active [3]'


def test_param_dump_lists_every_declared_parameter_with_the_yaml_values(launched, share):
    from pspnet_ros.node.parameters import PARAMETERS
    proc = ros2('param', 'dump', NODE, '--no-daemon')
    assert proc.returncode == 0, proc.stderr
    dumped = yaml.safe_load(proc.stdout)[NODE]['ros__parameters']
    assert set(PARAMETERS) <= set(dumped), set(PARAMETERS) - set(dumped)
    assert 'use_sim_time' in dumped
    given = yaml.safe_load((share / 'config' / 'segment.yaml').read_text())
    for name, value in given['/**']['ros__parameters'].items():
        assert dumped[name] == value, name


def test_topic_hz_measures_the_mask_while_frames_flow(launched):
    # ros2 topic hz runs until interrupted; it prints "average rate: ..." every second, over
    # the last 20 arrivals: over 5, one mask delayed by 90 ms on a busy CPU read 5.505 Hz.
    proc = subprocess.Popen(['ros2', 'topic', 'hz', f'{NODE}/mask', '--window', '20'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(), start_new_session=True)
    time.sleep(12.0)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=30)[0]
    rates = [float(line.split(':')[1]) for line in out.splitlines()
             if line.strip().startswith('average rate:')]
    assert rates, out          # at least two masks arrived
    # The camera sends 5 Hz; the node answers every frame or drops (never queues) some: on
    # a loaded 2-core machine it may answer far fewer, but never more than the camera sends.
    assert 0.0 < rates[-1] <= 5.5, out


def test_occupancy_reads_with_sensor_msgs_py_read_points(launched, rclpy_context):
    point_cloud2 = pytest.importorskip('sensor_msgs_py.point_cloud2',
                                       reason='sensor_msgs_py is not installed')
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    node = rclpy_context.create_node('pspnet_cli_test_occupancy')
    got = []
    node.create_subscription(PointCloud2, f'{NODE}/occupancy', got.append,
                             qos_profile_sensor_data)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        ex.spin_once(timeout_sec=0.1)
    ex.remove_node(node)
    node.destroy_node()
    assert got, 'no ~/occupancy message within 60 s'
    msg = got[-1]
    classes = ['sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign_symbol', 'fence',
               'car', 'pedestrian', 'bicyclist']
    names = [f.name for f in msg.fields]
    assert names == ['x0', 'y0', 'x1', 'y1', 'pixels', *classes,
                     *[c + '_count' for c in classes]]
    points = point_cloud2.read_points(msg, skip_nans=False)
    assert len(points) == 2                                  # whole frame + 'ahead'
    whole, ahead = points[0], points[1]
    assert [float(whole[k]) for k in ('x0', 'y0', 'x1', 'y1')] == [0.0, 0.0, 1.0, 1.0]
    assert [float(ahead[k]) for k in ('x0', 'y0', 'x1', 'y1')] == \
        pytest.approx([0.3, 0.5, 0.7, 1.0])
    assert int(whole['pixels']) == 480 * 360
    for point in (whole, ahead):
        counts = [int(point[c + '_count']) for c in classes]
        assert sum(counts) == int(point['pixels'])
        fractions = [float(point[c]) for c in classes]
        assert fractions == pytest.approx([n / int(point['pixels']) for n in counts], abs=1e-6)
    road = point_cloud2.read_points_list(msg, field_names=['road'])
    assert len(road) == 2 and 0.0 <= road[0].road <= 1.0


def test_a_profile_given_as_params_file_sets_the_node_up(share, tmp_path):
    run = Launched(tmp_path, f'params_file:={share / "config" / "cpu.yaml"}',
                   'namespace:=profile', 'image_topic:=/profile_cam/image_raw',
                   node='/profile/pspnet_segmentation')
    try:
        run.wait_active()
        proc = ros2('param', 'dump', run.node, '--no-daemon')
        assert proc.returncode == 0, proc.stderr
        dumped = yaml.safe_load(proc.stdout)[run.node]['ros__parameters']
    finally:
        code = run.stop()
    assert code == 0, run.log.read_text()
    # cpu.yaml's own values, and the node's defaults for what it leaves out.
    assert dumped['publish_overlay'] is False
    assert dumped['backend_options'] == []     # the backend's own defaults (channels_last)
    assert dumped['image_qos'] == 'sensor_data'
    assert dumped['occupancy_regions'] == ['ahead:0.3,0.5,0.7,1.0']


def test_ros2_run_starts_the_command_line_tool(share):
    proc = ros2('pkg', 'executables', 'pspnet_ros')
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) >= {'pspnet_ros', 'pspnet-ros', 'segment_node'}
    proc = ros2('run', 'pspnet_ros', 'pspnet-ros', '--help', timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('usage: pspnet-ros')
