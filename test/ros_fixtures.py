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


def lifecycle(n: NodeUnderTest, transition_id: int, node: str = '/pspnet_segmentation') -> bool:
    """Ask the node under test for a lifecycle transition; whether it succeeded."""
    from lifecycle_msgs.srv import ChangeState
    cli = n.client.create_client(ChangeState, f'{node}/change_state')
    assert cli.wait_for_service(30)
    req = ChangeState.Request()
    req.transition.id = transition_id
    fut = cli.call_async(req)
    n.client.spin_until(n.ex, fut.done, 60)
    return fut.result().success


def lifecycle_state(n: NodeUnderTest, node: str = '/pspnet_segmentation') -> str:
    """The lifecycle state label of the node under test."""
    from lifecycle_msgs.srv import GetState
    cli = n.client.create_client(GetState, f'{node}/get_state')
    assert cli.wait_for_service(30)
    fut = cli.call_async(GetState.Request())
    n.client.spin_until(n.ex, fut.done, 10)
    return fut.result().current_state.label


def set_parameters(n: NodeUnderTest, values: dict, node: str = '/pspnet_segmentation') -> list:
    """Set parameters of the node under test; the results (``successful``, ``reason``)."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    cli = n.client.create_client(SetParameters, f'{node}/set_parameters')
    assert cli.wait_for_service(30)
    req = SetParameters.Request()
    req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
    fut = cli.call_async(req)
    n.client.spin_until(n.ex, fut.done, 30)
    return list(fut.result().results)
