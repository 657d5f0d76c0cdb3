"""Shared fixtures: paths to ../shared data and the shipped default model."""
import ast
import os
from pathlib import Path
import subprocess
import sys
import tempfile

import pytest

# Hermetic: the nodes that tests start cache their measured `backend: auto` choice (and rcl
# writes its logs) under a folder of this test session, as on a fresh machine, never in the
# user's ~/.cache or ROS_HOME.
os.environ['ROS_HOME'] = tempfile.mkdtemp(prefix='pspnet_ros_test_home_')

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
CAMVID = SHARED / 'data' / 'camvid'
CORAL = SHARED / 'models' / 'coral'
BAGS = SHARED / 'data' / 'bags'
DEFAULT_CARD = ROOT / 'models' / 'pspnet_mobilenetv2_camvid.yaml'


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f'{path} is not present (shared third-party data; see README, '
                    '"Data and licences")')
    return path


def street_frame(height: int = 360, width: int = 480):
    """CamVid frame 0016E5_07965 at height x width, or without ../shared a synthetic
    street-like frame (sky over road) that still exercises the node's I/O."""
    import numpy as np
    path = CAMVID / 'val' / '0016E5_07965.png'
    if path.exists():
        from pspnet_ros.core import read_image
        img = read_image(path)
        if img.shape[:2] != (height, width):
            import cv2
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
        return img
    img = np.zeros((height, width, 3), np.uint8)
    img[:height * 5 // 12] = (140, 160, 200)
    img[height * 5 // 12:] = (90, 80, 90)
    return img


def _loaded_after(code: str, which: str) -> list[str]:
    """``sorted(<which>)`` in a fresh interpreter after running ``code`` (``which`` is an
    expression over ``sys.modules``)."""
    probe = f'{code}\nimport sys\nprint(sorted({which}))'
    out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def modules_loaded_by(code: str, names) -> list[str]:
    """Which of the module ``names`` a fresh interpreter has loaded after running ``code``."""
    return _loaded_after(code, f'm for m in {tuple(names)!r} if m in sys.modules')


def packages_loaded_by(code: str, packages) -> list[str]:
    """The modules of the top-level ``packages`` (rclpy, std_msgs...) that a fresh interpreter
    has loaded after running ``code``."""
    return _loaded_after(code, f'n for n in sys.modules if n.split(".")[0] in {tuple(packages)!r}')


# Markers by what a test needs, so that `-m` selects (make test-unit, CI's colcon stage): a
# test that takes rclpy_context talks over DDS; one that starts Ray starts worker processes.
FIXTURE_MARKS = {'rclpy_context': 'ros', 'local_ray': 'slow', 'two_nodes': 'slow'}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, 'fixturenames', ()):
                item.add_marker(mark)


@pytest.fixture(scope='session')
def camvid() -> Path:
    return need(CAMVID)


@pytest.fixture(scope='session')
def coral() -> Path:
    return need(CORAL)


@pytest.fixture(scope='session')
def default_segmenter():
    from pspnet_ros.core import Segmenter
    return Segmenter(DEFAULT_CARD)


@pytest.fixture(scope='module')
def rclpy_context():
    """rclpy for the tests of one module, shut down after them.

    Never initialised at import: the launch_testing pytest plugin imports every test module
    while collecting, and its launch test initialises rclpy itself (``colcon test``).
    """
    from ros_fixtures import rclpy_session
    rclpy = rclpy_session()
    yield rclpy
    rclpy.try_shutdown()
