"""The node in its own process over real DDS under a robot's conditions: lifecycle shutdown,
run-time limits, signals mid-frame, CPU pinning, and camera-sized frames with and without the
Fast DDS profile."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ros_fixtures import DOMAIN, NodeUnderTest, ROOT

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
pytestmark = [pytest.mark.ros, pytest.mark.usefixtures('rclpy_context')]

from pspnet_ros.live import stamp_key  # noqa: E402


def _frame(h=120, w=160):
    img = np.zeros((h, w, 3), np.uint8)
    img[:h // 2] = (140, 160, 200)
    img[h // 2:] = (90, 80, 90)
    return img


def _set_param(n, name, value):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    cli = n.client.create_client(SetParameters, '/pspnet_segmentation/set_parameters')
    assert cli.wait_for_service(30)
    fut = cli.call_async(SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg()]))
    n.client.spin_until(n.ex, fut.done, 30)
    return fut.result().results[0]


def test_shutdown_from_active_releases_subscriptions_timers_and_publishers(tmp_path):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    n = NodeUnderTest(tmp_path, client_kwargs={'outputs': ('mask',)})
    try:
        assert n.send_and_wait(n.client.make_image(_frame(), 30_000_000_001))
        n.fresh_diag()
        cli = n.client.create_client(ChangeState, '/pspnet_segmentation/change_state')
        assert cli.wait_for_service(30)
        req = ChangeState.Request()
        req.transition.id = Transition.TRANSITION_ACTIVE_SHUTDOWN
        fut = cli.call_async(req)
        assert n.client.spin_until(n.ex, fut.done, 60) and fut.result().success
        get = n.client.create_client(GetState, '/pspnet_segmentation/get_state')
        fut = get.call_async(GetState.Request())
        n.client.spin_until(n.ex, fut.done, 30)
        assert fut.result().current_state.label == 'finalized'
        mask_sub = n.client._subs[0]
        assert n.client.spin_until(
            n.ex, lambda: (n.client.pub.get_subscription_count() == 0
                           and mask_sub.get_publisher_count() == 0), 10)
        seen = len(n.client.diagnostics)
        n.client.publish(n.client.make_image(_frame(), 30_000_000_002))
        n.spin(3.0)
        assert len(n.client.diagnostics) == seen, 'diagnostics timer still running'
        assert 30_000_000_002 not in n.client.received
    finally:
        assert n.close() == 0
    log = n.log.read_text()
    assert 'shut down from active: subscriptions, timers, publishers and the model released' \
        in log and 'Traceback' not in log


def test_raised_max_image_pixels_reaches_the_segmenter_and_pinning_applies(tmp_path):
    cpu = sorted(os.sched_getaffinity(0))[0]
    n = NodeUnderTest(tmp_path, ros_args=['-p', 'max_image_pixels:=19200', '-p',
                                          f'cpu_affinity:=[{cpu}]', '-p', 'num_threads:=8'],
                      client_kwargs={'outputs': ('mask',)})
    try:
        big = n.client.make_image(_frame(240, 320), 31_000_000_001)
        n.client.publish(big)
        v = n.latest_diag(lambda v: v.get('errors.too_large') == '1', 30)
        assert v, 'a 320x240 frame over the 19200-pixel limit was not rejected'
        assert (v['threads'], v['cpus']) == ('1', str(cpu))
        assert _set_param(n, 'max_image_pixels', 320 * 240).successful
        big = n.client.make_image(_frame(240, 320), 31_000_000_002)
        assert n.send_and_wait(big), 'frame within the raised limit got no mask'
        mask = n.client.received[stamp_key(big.header)].msgs['mask']
        assert (mask.height, mask.width) == (240, 320)
        v = n.fresh_diag()
        assert 'errors.inference' not in v and 'fallbacks' not in v
        assert v['errors.too_large'] == '1'
    finally:
        assert n.close() == 0
    assert 'Traceback' not in n.log.read_text()


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT, 'SIGINT twice'])
def test_a_signal_during_a_frame_stops_cleanly_without_an_internal_error(tmp_path, sig):
    """'SIGINT twice': Ctrl-C in the terminal of ``ros2 launch`` reaches the node from the
    terminal (its process group) and again from launch; the second lands during clean-up."""
    n = NodeUnderTest(tmp_path, client_kwargs={'outputs': ('mask',)})
    frame = _frame(720, 1280)
    try:
        assert n.send_and_wait(n.client.make_image(frame, 32_000_000_000), 60)
        # Keep the worker busy with camera-sized frames, then signal mid-stream.
        for i in range(1, 16):
            n.client.publish(n.client.make_image(frame, 32_000_000_000 + i))
            n.spin(0.05)
        if sig == 'SIGINT twice':
            n.proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            n.proc.send_signal(signal.SIGINT)
        else:
            n.proc.send_signal(sig)
        for i in range(16, 24):
            n.client.publish(n.client.make_image(frame, 32_000_000_000 + i))
            n.spin(0.05)
        n.proc.wait(30)
    finally:
        code = n.close()
    log = n.log.read_text()
    assert code == 0, log
    assert '[internal]' not in log and 'Traceback' not in log, log


def _publisher(size: str, count: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / 'scripts' / 'transport_probe.py'),
                             'pub', '--size', size, '--rate', '10', '--count', str(count)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _child_env(profile: bool) -> dict:
    from pspnet_ros.live.transport import profile_env
    env = profile_env(None, None if profile else '')   # '' = no profile
    env['ROS_DOMAIN_ID'] = str(DOMAIN)
    return env


@pytest.mark.parametrize('profile', [True, False], ids=['with_profile', 'without_profile'])
def test_1280x720_best_effort_frames_between_two_processes(tmp_path, profile):
    """With the profile in both processes at least 95 % of 40 frames arrive; without it the
    node sees matched publishers but few or no frames and /diagnostics says so."""
    n = NodeUnderTest(tmp_path, ros_args=['-p', 'starvation_warn_sec:=2.0',
                                          '-p', 'image_qos:=sensor_data'],
                      client_kwargs={'outputs': ('mask',)},
                      **({} if profile else {'fastdds_profile': ''}))
    started = time.monotonic()
    pub = _publisher('720x1280', 40, _child_env(profile))
    try:
        out, _ = pub.communicate(timeout=120)
        assert pub.returncode == 0, out
        n.spin(2.0)
        v = n.fresh_diag()
        received = int(v['frames.received'])
        if profile:
            assert received >= 38, f'only {received}/40 frames arrived: {v}'
            assert int(v['frames.lost']) <= 2
        else:
            # How many still get through depends on the CPU load (0-11 of 40 seen; 11 beside
            # a training run): most are lost, which is the fault the profile fixes.
            assert received <= 20, f'{received}/40 arrived without the profile'
            pub2 = _publisher('720x1280', 60, _child_env(False))
            status = n.client.spin_until(n.ex, lambda: _starved(n), 40)
            pub2.communicate(timeout=120)
            assert status, 'no starvation / lost-frames warning in /diagnostics'
    finally:
        if pub.poll() is None:
            pub.kill()
        assert n.close() == 0
    if not profile:
        log = n.log.read_text()
        assert 'fastdds_large_frames.xml' in log
        # Starvation and lost frames: one warning a minute at most, not one per frame or tick
        # (a loaded machine can stretch this test past a minute).
        minutes = int((time.monotonic() - started) // 60)
        assert 1 <= log.count('camera-sized frames need the Fast DDS profile') <= 1 + minutes, \
            log


def _starved(n) -> bool:
    from diagnostic_msgs.msg import DiagnosticStatus
    for arr in n.client.diagnostics[-3:]:
        for st in arr.status:
            if ('/pspnet_segmentation:' in st.name and st.level == DiagnosticStatus.WARN
                    and 'fastdds_large_frames.xml' in st.message
                    and 'frames.lost' in st.message):
                return True
    return False
