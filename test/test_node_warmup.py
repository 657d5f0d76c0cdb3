"""Warm-up: the first frame at a camera's size costs what the others cost, on every backend."""
import importlib.util
import statistics

import numpy as np
import pytest

from ros_fixtures import NodeUnderTest, ROOT

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
pytestmark = [pytest.mark.ros, pytest.mark.usefixtures('rclpy_context')]


def _street(h: int, w: int, seed: int) -> np.ndarray:
    """A camera-sized frame with some structure (sky, buildings, road) and noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:h // 3] = (150, 180, 220)
    img[h // 3:2 * h // 3] = (120, 100, 90)
    img[2 * h // 3:] = (80, 80, 85)
    noise = rng.integers(-20, 21, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _latencies(n: NodeUnderTest, frames: int, h: int, w: int) -> list[float]:
    from pspnet_ros.live import stamp_key
    out = []
    for i in range(frames):
        msg = n.client.make_image(_street(h, w, i), 50_000_000_000 + i * 100_000_000)
        assert n.send_and_wait(msg, 60), f'frame {i} got no mask'
        key = stamp_key(msg.header)
        out.append(n.client.received[key].times['mask'] - n.client.sent[key])
    return out


@pytest.mark.parametrize('backend', ['tflite', 'torch'])
def test_the_first_1280x720_frame_costs_what_the_others_cost(tmp_path, backend):
    if backend == 'tflite' and not any(importlib.util.find_spec(m)
                                       for m in ('ai_edge_litert', 'tflite_runtime')):
        pytest.skip('ai-edge-litert is not installed (the int8 model needs it)')
    # Camera-sized frames: this process and the node use the Fast DDS large-frames profile
    # (ros_fixtures). The node warms the whole path up at configure.
    n = NodeUnderTest(tmp_path, params=ROOT / 'config' / 'segment.yaml',
                      ros_args=['-p', f'backend:={backend}'],
                      client_kwargs={'outputs': ('mask',)})
    try:
        n.spin(1.0)
        lat = _latencies(n, 8, 720, 1280)
        v = n.latest_diag(lambda v: 'backend' in v)
    finally:
        assert n.close() == 0
    assert v['backend'] == backend
    first, median = lat[0], statistics.median(lat[1:])
    assert first <= 3 * median, (f'first frame {first * 1e3:.0f} ms, median of the next '
                                 f'{median * 1e3:.0f} ms: {[round(x * 1e3) for x in lat]}')


def test_warm_up_stays_within_the_pixel_limit():
    # The network input (281x377 = 105,937 pixels) is over this limit: the warm-up frame is
    # scaled down to fit instead of failing the configure.
    from conftest import DEFAULT_CARD
    from pspnet_ros.core import Segmenter
    from pspnet_ros.node.config import NodeConfig
    from pspnet_ros.node.warmup import warm_up
    seg = Segmenter(DEFAULT_CARD, max_pixels=19200)
    assert warm_up(seg, NodeConfig.from_parameters({'max_image_pixels': 19200})) > 0
