"""The node's helper modules (camera scheduling, parameter parsing, stats) import no ROS."""
import subprocess
import sys

import pytest

ROS_PACKAGES = ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'rcl_interfaces',
                'lifecycle_msgs', 'rosidl_runtime_py')


@pytest.mark.parametrize('module', ['cameras', 'config', 'parameters', 'stats'])
def test_node_helper_module_loads_no_ros_package(module):
    # In a fresh interpreter: another test of this session may have imported rclpy already.
    code = (
        'import importlib, sys\n'
        f'importlib.import_module("pspnet_ros.node.{module}")\n'
        f'bad = sorted({{n for n in sys.modules if n.split(".")[0] in {ROS_PACKAGES!r}}})\n'
        'print(bad)\n'
        'sys.exit(1 if bad else 0)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, f'node.{module} imports ROS: {proc.stdout}{proc.stderr}'
