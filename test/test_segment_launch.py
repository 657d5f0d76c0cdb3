"""launch_testing: the real launch file starts the node, which answers frames and exits cleanly;
the Fast DDS profile it gives the node does not reach the other processes of a launch that
includes it.

Runs where launch_testing exists (a ROS 2 install: ``colcon test`` or ``launch_test``); the
pip-only environment has no launch/launch_ros/launch_testing wheels, so it is skipped there.
"""
import os
import sys
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch, launch_ros and launch_testing are not pip-installable; '
    'this test runs in a ROS 2 install (colcon test)')

import launch  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402

pytestmark = [pytest.mark.ros_install]

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
# A real profile (a later rclpy in this process may read it), by another path than the node's.
PARENT_PROFILE = os.path.realpath(os.path.join(HERE, '..', 'config', 'fastdds_large_frames.xml'))


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(HERE, '..', 'launch', 'segment.launch.py')),
        launch_arguments={'image_topic': '/test_camera/image_raw'}.items())
    # The including launch has its own profile setting; another of its processes, started
    # after the include, must still see it (the node alone gets segment.launch.py's profile).
    own = launch.actions.SetEnvironmentVariable(PROFILE_ENV, PARENT_PROFILE)
    probe = launch.actions.ExecuteProcess(
        cmd=[sys.executable, '-c',
             f'import os; print("profile=" + os.environ.get("{PROFILE_ENV}", "unset"))'],
        output='screen')
    return (launch.LaunchDescription([own, include, probe,
                                      launch_testing.actions.ReadyToTest()]),
            {'probe': probe})


class TestMasksArrive(unittest.TestCase):

    def test_the_other_processes_keep_their_middleware_environment(self, proc_output, probe):
        proc_output.assertWaitFor(f'profile={PARENT_PROFILE}', process=probe, timeout=30,
                                  stream='stdout')

    def test_masks_come_back_for_published_frames(self, proc_output):
        from rclpy.executors import SingleThreadedExecutor
        from pspnet_ros.live import LiveClient, stamp_key
        # launch_ros may already have initialised rclpy in this process (it does when this
        # test runs on its own); then it owns the context and shuts it down.
        owned = not rclpy.ok()
        if owned:
            rclpy.init()
        try:
            client = LiveClient(image_topic='/test_camera/image_raw', outputs=('mask',))
            ex = SingleThreadedExecutor()
            ex.add_node(client)
            self.assertTrue(client.wait_for_node(ex, 120))
            img = np.zeros((120, 160, 3), np.uint8)
            for i in range(3):
                msg = client.make_image(img, 1_000_000_000 + i)
                client.publish(msg)
                self.assertTrue(client.spin_until(
                    ex, lambda: client.complete(stamp_key(msg.header)), 30))
        finally:
            if owned:
                rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code_is_clean(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
