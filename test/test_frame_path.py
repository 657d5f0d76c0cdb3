"""The frame path on its own (no DDS): every frame's one outcome across a deactivation."""
from concurrent.futures import ThreadPoolExecutor
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')

from rclpy.serialization import serialize_message  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from pspnet_ros.node.cameras import CameraSet  # noqa: E402
from pspnet_ros.node.config import CameraConfig, NodeConfig  # noqa: E402
from pspnet_ros.node.convert import rgb_to_msg  # noqa: E402
from pspnet_ros.node.inference import Camera, FramePath, ThrottledLog  # noqa: E402
from pspnet_ros.node.stats import Counters, LatencyStats  # noqa: E402


class Pub:
    def __init__(self, subscribers):
        self.subscribers, self.sent = subscribers, []

    def get_subscription_count(self):
        return self.subscribers

    def publish(self, msg):
        self.sent.append(msg)


class SlowSegmenter:
    """Holds each batch until ``release`` is set; records the regions it was given."""

    backend = SimpleNamespace(name='torch', device='cpu', describe=lambda: 'fake')
    class_names = ['a', 'b']
    max_pixels = 10 ** 6

    def __init__(self):
        self.started, self.release, self.regions = threading.Event(), threading.Event(), []

    def run_batch(self, images, confidence, occupancy):
        self.started.set()
        assert self.release.wait(10)
        return images

    def finish_batch(self, images, regions):
        self.regions.append(regions)
        t = {'preprocess': 0.0, 'inference': 0.0, 'postprocess': 0.0}
        return [SimpleNamespace(labels=np.zeros(im.shape[:2], np.uint8), confidence=None,
                                occupancy=None, timings=t) for im in images]


def frame(i):
    header = Header()
    header.stamp.sec = i
    msg = rgb_to_msg(np.full((4, 6, 3), i, np.uint8), header)
    return serialize_message(msg)


def test_a_deactivation_finishes_the_running_frame_and_counts_the_waiting_one_discarded():
    cfg = NodeConfig.from_parameters({'occupancy_regions': ['a:0,0,0.5,1']})
    seg = SlowSegmenter()
    settings = {'cfg': cfg}
    cam = Camera(CameraConfig())
    cam.pubs = {'mask': Pub(1), 'color_mask': Pub(0), 'overlay': Pub(0),
                'confidence': Pub(0), 'occupancy': Pub(0), 'camera_info': Pub(0)}
    log = ThrottledLog(SimpleNamespace(warning=print, error=print), lambda: 0.0)
    path = FramePath(lambda: (settings['cfg'], seg), lambda s, n: None, log.logger, log,
                     Counters(), LatencyStats(), lambda: True)
    camset = CameraSet([''], counters={'': cam.counters})
    pool = ThreadPoolExecutor(1)
    path.start({'': cam}, camset, pool, workers=1, threads=0)
    path.on_image(cam, frame(1))
    assert seg.started.wait(10)              # frame 1 runs, under the regions of its start
    settings['cfg'] = cfg.updated({'occupancy_regions': ['b:0,0,1,1']})
    path.on_image(cam, frame(2))             # waits
    path.on_image(cam, frame(3))             # replaces frame 2: dropped
    stopper = threading.Thread(target=path.stop)
    stopper.start()
    while path._running:                     # the deactivation has begun
        time.sleep(0.001)
    seg.release.set()
    stopper.join(10)
    pool.shutdown()
    c = cam.counters.snapshot()
    assert {k: c.get(k, 0) for k in ('frames.received', 'frames.processed', 'frames.dropped',
                                     'frames.discarded_on_transition', 'frames.errors')} == {
        'frames.received': 3, 'frames.processed': 1, 'frames.dropped': 1,
        'frames.discarded_on_transition': 1, 'frames.errors': 0}
    assert seg.regions == [{'a': (0.0, 0.0, 0.5, 1.0)}]
    assert [m.header.stamp.sec for m in cam.pubs['mask'].sent] == [1]


class PipelineSegmenter(SlowSegmenter):
    """Frame 1's postprocessing waits until frame 2's inference has started: it only ends if
    the two stages overlap."""

    def __init__(self):
        super().__init__()
        self.inferring = {}
        self.overlapped = None

    def run_batch(self, images, confidence, occupancy):
        self.inferring[int(images[0][0, 0, 0])] = True
        self.started.set()
        return images

    def finish_batch(self, images, regions):
        if int(images[0][0, 0, 0]) == 1:
            deadline = time.monotonic() + 10
            while 2 not in self.inferring and time.monotonic() < deadline:
                time.sleep(0.001)
            self.overlapped = 2 in self.inferring
        return super().finish_batch(images, regions)


def test_the_next_frame_is_inferred_while_the_last_one_is_published_and_order_holds():
    cfg = NodeConfig.from_parameters({})
    seg = PipelineSegmenter()
    cam = Camera(CameraConfig())
    cam.pubs = {'mask': Pub(1), 'color_mask': Pub(0), 'overlay': Pub(0),
                'confidence': Pub(0), 'occupancy': Pub(0), 'camera_info': Pub(0)}
    log = ThrottledLog(SimpleNamespace(warning=print, error=print), lambda: 0.0)
    path = FramePath(lambda: (cfg, seg), lambda s, n: None, log.logger, log,
                     Counters(), LatencyStats(), lambda: True)
    camset = CameraSet([''], counters={'': cam.counters})
    pool = ThreadPoolExecutor(1)
    path.start({'': cam}, camset, pool, workers=1, threads=0)
    path.on_image(cam, frame(1))
    assert seg.started.wait(10)
    path.on_image(cam, frame(2))
    deadline = time.monotonic() + 10
    while len(cam.pubs['mask'].sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    path.stop()
    pool.shutdown()
    assert seg.overlapped is True       # frame 2 ran before frame 1 was published
    assert [m.header.stamp.sec for m in cam.pubs['mask'].sent] == [1, 2]
    assert cam.counters.get('frames.processed') == 2


def test_two_cameras_on_tflite_run_on_two_interpreters_side_by_side_with_the_bare_labels():
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    from conftest import ROOT, street_frame
    from pspnet_ros.core import Segmenter
    seg = Segmenter(ROOT / 'models' / 'pspnet_mobilenetv2_camvid_int8.tflite.yaml', 'tflite',
                    backend_options={'num_threads': 2})
    cfg = NodeConfig.from_parameters({'cameras': ['a', 'b'], 'max_batch': 1})
    cams = {}
    for name in ('a', 'b'):
        cams[name] = Camera(CameraConfig(name))
        cams[name].pubs = {'mask': Pub(1), 'color_mask': Pub(0), 'overlay': Pub(0),
                           'confidence': Pub(0), 'occupancy': Pub(0), 'camera_info': Pub(0)}
    log = ThrottledLog(SimpleNamespace(warning=print, error=print), lambda: 0.0)
    path = FramePath(lambda: (cfg, seg), lambda s, n: None, log.logger, log,
                     Counters(), LatencyStats(), lambda: True)
    camset = CameraSet(['a', 'b'], max_batch=1, one_in_flight=True,
                       counters={n: c.counters for n, c in cams.items()})
    pool = ThreadPoolExecutor(2)
    path.start(cams, camset, pool, workers=2, threads=1)
    replicas = [own for _, own in path._replicas.values()]
    images = {'a': street_frame(), 'b': np.ascontiguousarray(street_frame()[:, ::-1])}
    header = Header()
    for i in range(1, 4):
        header.stamp.sec = i
        for name, img in images.items():
            path.on_image(cams[name], serialize_message(rgb_to_msg(img, header)))
        deadline = time.monotonic() + 30
        while any(len(c.pubs['mask'].sent) < i for c in cams.values()) \
                and time.monotonic() < deadline:
            time.sleep(0.002)
    path.stop()
    pool.shutdown()
    # Each worker its own one-thread interpreter, none of them the settings' Segmenter's.
    assert len(replicas) == 2 and len({id(r.backend.interpreter) for r in replicas}) == 2
    assert all(r.backend.interpreter is not seg.backend.interpreter for r in replicas)
    assert [r.backend.details['num_threads'] for r in replicas] == [1, 1]
    for name, img in images.items():
        sent = cams[name].pubs['mask'].sent
        assert [m.header.stamp.sec for m in sent] == [1, 2, 3]
        expected = seg(img, occupancy=False).labels
        for m in sent:
            got = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width)
            assert np.array_equal(got, expected)
        assert cams[name].counters.get('frames.processed') == 3
