"""A parameter file the node cannot read is one line naming the file, line and problem, and
exit code 2, before ROS starts (rcl's own report is a 9-line traceback)."""
import subprocess
import sys

from conftest import ROOT

from pspnet_ros.node.__main__ import params_files


def _node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'pspnet_ros.node', *args],
                          capture_output=True, text=True, timeout=120)


def test_a_yaml_error_in_a_params_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('/**:\n  ros__parameters:\n    backend: [auto\n    model: x\n')
    proc = _node('--ros-args', '--params-file', str(ROOT / 'config' / 'segment.yaml'),
                 '--params-file', str(bad))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: parameter file {bad}:4:10: not valid YAML: expected ',' or ']', but got ':' "
        '(while parsing a flow sequence)']
    assert proc.stdout == ''


def test_a_missing_weights_or_listed_params_file_is_one_line_too(tmp_path):
    (tmp_path / 'list.yaml').write_text('- backend: auto\n')
    weights = ROOT / 'models' / 'pspnet_mobilenetv2_camvid.safetensors'
    for path, text in (
            (tmp_path / 'none.yaml', f'parameter file {tmp_path}/none.yaml: file not found'),
            (weights, f'parameter file {weights} is a weights or model file, not YAML '
                      'parameters'),
            (tmp_path / 'list.yaml', f'parameter file {tmp_path}/list.yaml: expected a '
                                     'mapping of node names to ros__parameters (e.g. "/**:"), '
                                     'got a list')):
        proc = _node('--ros-args', '--params-file', str(path))
        assert (proc.returncode, proc.stderr.splitlines()) == (2, [f'error: {text}'])


def test_only_params_files_of_the_ros_args_sections_are_read():
    assert params_files(['--params-file', 'a.yaml', '--ros-args', '-p', 'x:=1',
                         '--params-file', 'b.yaml', '--', '--params-file', 'c.yaml',
                         '--ros-args', '--params-file', 'd.yaml']) == ['b.yaml', 'd.yaml']
