"""launch_testing: the real launch file starts the node, which answers frames and exits cleanly.

Runs where launch_testing exists (a ROS 2 install: ``colcon test`` or ``launch_test``); the
pip-only environment has no launch/launch_ros/launch_testing wheels, so it is skipped there.
"""
import os
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

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(HERE, '..', 'launch', 'segment.launch.py')),
        launch_arguments={'image_topic': '/test_camera/image_raw'}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestMasksArrive(unittest.TestCase):

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
