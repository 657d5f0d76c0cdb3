"""segment.launch.py evaluated by the launch library: the Fast DDS profile goes to the node's
process only, and nothing deprecated is used.

Needs the launch and launch_ros packages (a ROS 2 install, or ``make test-ros``'s .venv-ros);
skipped in the plain venv. test_segment_launch.py runs the same file for real.
"""
import importlib.util
import os
from pathlib import Path
import warnings

import pytest

pytest.importorskip('launch', reason='launch is not pip-installable; runs in a ROS 2 install '
                    '(make test-ros)')
pytest.importorskip('launch_ros', reason='launch_ros is not pip-installable; runs in a ROS 2 '
                    'install (make test-ros)')

pytestmark = [pytest.mark.ros, pytest.mark.ros_install]

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'segment.launch.py'
PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'


def _description():
    spec = importlib.util.spec_from_file_location('segment_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _evaluate(arguments: dict):
    """Run the description's actions in a fresh context as `ros2 launch` would, up to the
    process start; the context and the actions it produced."""
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    context = LaunchContext()
    for name, value in arguments.items():
        context.launch_configurations[name] = value
    produced = []
    for action in _description().entities:
        out = action.visit(context)
        if isinstance(action, OpaqueFunction):
            produced += out or []
    return context, produced


def _env(context, action) -> dict:
    from launch.utilities import perform_substitutions
    return {perform_substitutions(context, k): perform_substitutions(context, v)
            for k, v in (action.additional_env or [])}


ARGS = {'params_file': str(ROOT / 'config' / 'segment.yaml'),
        'fastdds_profile': str(ROOT / 'config' / 'fastdds_large_frames.xml')}


def test_the_profile_goes_to_the_node_process_not_the_launch_context():
    from launch_ros.actions import Node
    context, produced = _evaluate(ARGS)
    (node,) = produced
    assert isinstance(node, Node)
    assert _env(context, node) == {PROFILE_ENV: ARGS['fastdds_profile']}
    # A launch that includes this one keeps its environment for the processes it starts.
    assert context.environment.get(PROFILE_ENV) == os.environ.get(PROFILE_ENV)


def test_an_empty_profile_leaves_the_node_environment_alone():
    context, (node,) = _evaluate(dict(ARGS, fastdds_profile=''))
    assert PROFILE_ENV not in _env(context, node)


def test_the_launch_file_uses_nothing_deprecated():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        _evaluate(ARGS)
    assert [str(w.message) for w in caught] == []
    src = LAUNCH.read_text()
    assert 'LaunchConfigurationEquals' not in src and 'LaunchConfigurationNotEquals' not in src
    assert 'SetEnvironmentVariable' not in src
