"""Helpers for tests that run the node in its own process over real DDS."""
import os
from pathlib import Path
import time

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / 'config' / 'segment.yaml'
# One DDS domain per test session keeps parallel CI jobs on one machine apart.
DOMAIN = 100 + os.getpid() % 100


def rclpy_session():
    """Initialise rclpy in this process (once) on the test domain; call it from tests only."""
    rclpy = pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN)
    # Camera-sized frames need the shipped Fast DDS profile in both processes: this one
    # (read when rclpy creates its participant) and the node (inherits the environment).
    from pspnet_ros.live.transport import use_large_frames_profile
    use_large_frames_profile()
    if not rclpy.ok():
        rclpy.init()
    return rclpy


class NodeUnderTest:
    """A segment_node process plus a LiveClient in this process."""

    def __init__(self, tmp: Path, ros_args=(), client_kwargs=None, wait=True, params=PARAMS,
                 fastdds_profile=None):
        rclpy_session()
        from rclpy.executors import SingleThreadedExecutor
        from pspnet_ros.live import LiveClient, start_node
        self.log = tmp / f'node_{time.monotonic_ns()}.log'
        self.proc = start_node(params, DOMAIN, list(ros_args), self.log,
                               fastdds_profile=fastdds_profile)
        self.client = LiveClient(**(client_kwargs or {}))
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.client)
        if wait and not self.client.wait_for_node(self.ex, 120):
            self.close()
            raise AssertionError('node did not come up:\n' + self.log.read_text())

    def send_and_wait(self, msg, timeout=30.0) -> bool:
        from pspnet_ros.live import stamp_key
        self.client.publish(msg)
        key = stamp_key(msg.header)
        return self.client.spin_until(self.ex, lambda: self.client.complete(key), timeout)

    def spin(self, seconds):
        self.client.spin_until(self.ex, lambda: False, seconds)

    def latest_diag(self, predicate=lambda v: True, timeout=10.0) -> dict:
        from pspnet_ros.live import diag_values
        found = {}

        def check():
            nonlocal found
            if self.client.diagnostics:
                v = diag_values(self.client.diagnostics[-1], self.client.node_name)
                if predicate(v):
                    found = v
                    return True
            return False
        self.client.spin_until(self.ex, check, timeout)
        return found

    def fresh_diag(self, timeout=10.0) -> dict:
        """Values of a diagnostics message published after this call (not a stale one)."""
        from pspnet_ros.live import diag_values
        seen = len(self.client.diagnostics)
        assert self.client.spin_until(self.ex, lambda: len(self.client.diagnostics) > seen,
                                      timeout), 'no diagnostics message arrived'
        return diag_values(self.client.diagnostics[-1], self.client.node_name)

    def close(self) -> int:
        from pspnet_ros.live import stop_node
        code = stop_node(self.proc)
        self.ex.remove_node(self.client)
        self.client.destroy_node()
        return code
