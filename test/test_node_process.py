"""The node as a process: lifecycle publishers, signals at every moment, configure undone."""
import os
from pathlib import Path
import signal
import subprocess
import time

import pytest

from ros_fixtures import (DOMAIN, lifecycle, lifecycle_state, NodeUnderTest, PARAMS,
                          set_parameters)

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
pytestmark = [pytest.mark.ros]


def _watch_label_info(n: NodeUnderTest) -> None:
    """Collect every label_info message in ``n.label_infos`` (LiveClient keeps the last)."""
    import json
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    n.label_infos = []
    latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    n.client.create_subscription(String, '/pspnet_segmentation/label_info',
                                 lambda m: n.label_infos.append(json.loads(m.data)), latched)


@pytest.mark.usefixtures('rclpy_context')
def test_nothing_is_published_while_inactive(tmp_path):
    from lifecycle_msgs.msg import Transition
    n = NodeUnderTest(tmp_path, ros_args=['-p', 'autostart:=false'],
                      client_kwargs={'outputs': ()}, wait=False)
    try:
        _watch_label_info(n)
        assert lifecycle(n, Transition.TRANSITION_CONFIGURE)
        # Inactive: a cosmetic parameter change re-publishes label_info (its regions), but a
        # lifecycle publisher sends nothing before the activation; nor do the diagnostics.
        (res,) = set_parameters(n, {'occupancy_regions': ['left:0.0,0.0,0.5,1.0']})
        assert res.successful, res.reason
        n.spin(2.0)
        assert n.label_infos == [] and n.client.diagnostics == []
        assert lifecycle(n, Transition.TRANSITION_ACTIVATE)
        assert n.client.spin_until(n.ex, lambda: len(n.label_infos) == 1, 30)
        assert n.label_infos[0]['occupancy_regions'] == [
            {'name': 'left', 'box': [0.0, 0.0, 0.5, 1.0]}]
        assert n.client.spin_until(n.ex, lambda: n.client.diagnostics, 10)
        assert lifecycle(n, Transition.TRANSITION_DEACTIVATE)
        n.spin(0.5)
        diags = len(n.client.diagnostics)
        (res,) = set_parameters(n, {'occupancy_regions': ['right:0.5,0.0,1.0,1.0']})
        assert res.successful, res.reason
        n.spin(2.0)
        assert len(n.label_infos) == 1 and len(n.client.diagnostics) == diags
        assert lifecycle_state(n) == 'inactive'
    finally:
        assert n.close() == 0


@pytest.mark.usefixtures('rclpy_context')
def test_a_failed_configure_gives_back_the_cpu_affinity(tmp_path):
    start = os.sched_getaffinity(0)
    if len(start) < 2 or 0 not in start:
        pytest.skip('needs CPU 0 and at least one other CPU to tell the affinities apart')
    from lifecycle_msgs.msg import Transition
    n = NodeUnderTest(tmp_path, ros_args=['-p', 'autostart:=false', '-p', 'cpu_affinity:=[0]',
                                          '-p', f'model:={tmp_path}/missing.yaml'],
                      client_kwargs={'outputs': ()}, wait=False)
    try:
        assert lifecycle_state(n) == 'unconfigured'
        assert os.sched_getaffinity(n.proc.pid) == start
        assert not lifecycle(n, Transition.TRANSITION_CONFIGURE)
        assert lifecycle_state(n) == 'unconfigured'
        # The configure pinned the process to CPU 0 before the model failed; it is undone.
        assert os.sched_getaffinity(n.proc.pid) == start
    finally:
        assert n.close() == 0
    assert 'configure failed: model card not found' in n.log.read_text()


# -- signals ---------------------------------------------------------------------------------
def _start(tmp_path: Path, name: str, ros_args=()) -> tuple[subprocess.Popen, Path]:
    from pspnet_ros.live import start_node
    log = tmp_path / f'{name}.log'
    # torch named: its library loading marks the configure (auto may run a cached TFLite
    # choice whose configure is over before torch loads).
    return start_node(PARAMS, DOMAIN, ['-p', 'backend:=torch', *ros_args], log), log


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f'/proc/{pid}/maps').read_text()
    except OSError:
        return False


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _ends_cleanly(proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f'the node ignored the signal for {timeout} s:\n{log.read_text()}')
    text = log.read_text()
    assert code == 0, f'exit code {code}:\n{text}'
    for bad in ('Traceback', 'Exception ignored', '[ERROR]'):
        assert bad not in text, text


@pytest.mark.skipif(not Path('/proc/self/maps').exists(), reason='needs /proc (Linux)')
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_start_up_configure_ends_the_node_cleanly(tmp_path, sig):
    proc, log = _start(tmp_path, sig.name)
    try:
        # torch loads when the configure builds the model (never before: core.threads).
        assert _wait_for(lambda: _loaded(proc.pid, 'libtorch_cpu'), 120), log.read_text()
        proc.send_signal(sig)
        during = 'configured:' not in log.read_text()
    finally:
        _ends_cleanly(proc, log)
    assert during, 'the signal came after the configure: the test did not test it'


def test_sigint_then_sigterm_a_moment_later_ends_the_node_cleanly(tmp_path):
    proc, log = _start(tmp_path, 'int_term')
    try:
        assert _wait_for(lambda: 'active: listening' in log.read_text(), 120), log.read_text()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
    finally:
        _ends_cleanly(proc, log)


@pytest.mark.usefixtures('rclpy_context')
@pytest.mark.parametrize('attempt', [1, 2, 3])
def test_sigint_after_a_lifecycle_shutdown_ends_the_node(tmp_path, attempt):
    from lifecycle_msgs.msg import Transition
    n = NodeUnderTest(tmp_path, client_kwargs={'outputs': ()})
    try:
        assert lifecycle(n, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert lifecycle_state(n) == 'finalized'
        n.proc.send_signal(signal.SIGINT)
        _ends_cleanly(n.proc, n.log, timeout=20.0)
    finally:
        n.close()
    assert 'shut down from active' in n.log.read_text()
