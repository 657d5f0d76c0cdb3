"""The core must import without ROS: plain Python, the CLI and the evaluator use it too."""
import subprocess
import sys


def test_importing_every_core_module_loads_no_ros_package():
    code = (
        'import pkgutil, importlib, sys\n'
        'import pspnet_ros.core as core\n'
        'for m in pkgutil.walk_packages(core.__path__, "pspnet_ros.core."):\n'
        '    importlib.import_module(m.name)\n'
        'bad = sorted(n for n in sys.modules if n.split(".")[0] in ("rclpy", "sensor_msgs",\n'
        '             "std_msgs", "diagnostic_msgs", "rosidl_runtime_py", "lifecycle_msgs"))\n'
        'print(bad)\n'
        'sys.exit(1 if bad else 0)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
