"""The core must import without ROS: plain Python, the CLI and the evaluator use it too."""
from conftest import packages_loaded_by


def test_importing_every_core_module_loads_no_ros_package():
    code = ('import pkgutil, importlib\n'
            'import pspnet_ros.core as core\n'
            'for m in pkgutil.walk_packages(core.__path__, "pspnet_ros.core."):\n'
            '    importlib.import_module(m.name)')
    assert packages_loaded_by(code, ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
                                     'rosidl_runtime_py', 'lifecycle_msgs')) == []
