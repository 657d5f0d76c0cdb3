"""One node, three cameras, over real DDS with the node in its own process."""
import os
import time

import numpy as np
import pytest

from ros_fixtures import DOMAIN, PARAMS

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
# rclpy is initialised by the rclpy_context fixture, never at import (conftest.py says why).
pytestmark = [pytest.mark.ros, pytest.mark.usefixtures('rclpy_context')]

from pspnet_ros.core import read_image, rosimage, Segmenter  # noqa: E402
from pspnet_ros.live import (diag_values, LiveClient, Received, spin_until,  # noqa: E402
                             stamp_key, start_node, stop_node)

from conftest import CAMVID, DEFAULT_CARD  # noqa: E402

CAMS = ('front', 'left', 'right')
NODE = 'pspnet_multicam'
# Distinct stamp ranges per camera: an output on the wrong camera's topic would show.
BASE = {'front': 1_800_000_000_000_000_000, 'left': 1_810_000_000_000_000_000,
        'right': 1_820_000_000_000_000_000}


@pytest.fixture(scope='module')
def frames():
    names = {'front': '0016E5_07965.png', 'left': '0016E5_08085.png',
             'right': '0016E5_07975.png'}
    out = {}
    for cam, name in names.items():
        path = CAMVID / 'val' / name
        if not path.exists():
            pytest.skip(f'{path} is not present (shared CamVid data)')
        out[cam] = read_image(path)
    return out


class Rig:
    """The node process plus one LiveClient per camera, spun by one executor."""

    def __init__(self, tmp, ros_args, node=NODE, compressed=('right',)):
        from rclpy.executors import SingleThreadedExecutor
        self.node = node
        self.compressed = compressed
        self.log = tmp / f'{node}.log'
        args = ['-r', f'__node:={node}', '-p', f'cameras:=[{",".join(CAMS)}]',
                '-p', 'log_throttle_sec:=0.0', '-p', 'backend:=torch'] + list(ros_args)
        self.proc = start_node(PARAMS, DOMAIN, args, self.log)
        self.ex = SingleThreadedExecutor()
        self.clients = {}
        for cam in CAMS:
            self.clients[cam] = LiveClient(node_ns=f'/{node}', camera=cam,
                                           compressed=cam in compressed, reliable=True,
                                           outputs=('mask', 'occupancy'),
                                           name=f'{node}_client_{cam}')
            self.ex.add_node(self.clients[cam])
        end = time.monotonic() + 120
        ok = False
        while time.monotonic() < end and not ok:
            self.ex.spin_once(timeout_sec=0.1)
            ok = all(c.pub.get_subscription_count() > 0 and c.label_info is not None
                     for c in self.clients.values())
        if not ok:
            self.close()
            raise AssertionError('node did not come up:\n' + self.log.read_text())
        self.spin(1.0)

    def spin_until(self, predicate, timeout):
        return spin_until(self.ex, predicate, timeout)

    def spin(self, seconds):
        self.spin_until(lambda: False, seconds)

    def make(self, cam, rgb, i):
        return self.clients[cam].make_image(rgb, BASE[cam] + i, frame_id=f'{cam}_optical',
                                            compressed=cam in self.compressed)

    def diag(self, cam='', predicate=lambda v: True, timeout=15.0):
        client = self.clients['front']
        seen = len(client.diagnostics)
        found = {}

        def check():
            nonlocal found
            if len(client.diagnostics) > seen:
                v = diag_values(client.diagnostics[-1], self.node, cam)
                if v and predicate(v):
                    found = v
                    return True
            return False
        self.spin_until(check, timeout)
        return found

    def close(self):
        code = stop_node(self.proc)
        for c in self.clients.values():
            self.ex.remove_node(c)
            c.destroy_node()
        return code


@pytest.fixture(scope='module')
def rig(tmp_path_factory, rclpy_context):
    r = Rig(tmp_path_factory.mktemp('multicam'),
            ['-p', 'image_qos:=reliable', '-p', 'qos_depth:=5', '-p', 'max_batch:=3',
             '-p', 'right.input_transport:=compressed', '-p', 'max_image_pixels:=200000'])
    yield r
    assert r.close() == 0, 'node did not shut down cleanly on SIGINT'
    log = r.log.read_text()
    assert 'Traceback' not in log, log


def _labels(m):
    return rosimage.image_to_labels(m.height, m.width, m.encoding, m.is_bigendian, m.step,
                                    bytes(m.data))


def test_each_camera_gets_its_own_masks_equal_to_the_bare_segmenter(rig, frames):
    bare = Segmenter(DEFAULT_CARD, backend_options={'channels_last': True})
    sent = {}
    for i in range(3):
        for cam in CAMS:
            msg = rig.make(cam, frames[cam], i)
            sent[(cam, stamp_key(msg.header))] = msg
            rig.clients[cam].publish(msg)
        assert rig.spin_until(lambda: all(rig.clients[c].complete(BASE[c] + i) for c in CAMS),
                              60), f'round {i}: not every camera was answered'
    for cam in CAMS:
        client = rig.clients[cam]
        # Only this camera's stamps arrive on this camera's topics: nothing crosses.
        assert set(client.received) == {BASE[cam] + i for i in range(3)}, cam
        msg = sent[(cam, BASE[cam])]
        rgb = (rosimage.compressed_to_rgb(msg.format, bytes(msg.data)) if cam == 'right'
               else frames[cam])
        expect = bare(rgb, occupancy=False).labels
        for key in client.received:
            rec = client.received[key]
            for name, out in rec.msgs.items():
                assert out.header.frame_id == f'{cam}_optical', (cam, name)
                assert stamp_key(out.header) == key
            assert np.array_equal(_labels(rec.msgs['mask']), expect), cam
    # The three cameras' frames differ, and so do their masks.
    masks = [_labels(rig.clients[c].received[BASE[c]].msgs['mask']) for c in CAMS]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], masks[2])


def test_a_multi_camera_node_lets_its_threads_spin_between_layers(rig):
    # Batches keep the cores busy: libgomp spins about 0.1 ms before it sleeps, set before
    # torch loaded (a one-camera node does not spin, test_node_lifecycle_qos).
    log = rig.log.read_text()
    assert 'OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=10000' in log, log
    assert 'loaded before the thread pools' not in log and 'GOMP_SPINCOUNT stays' not in log


def test_diagnostics_have_one_status_per_camera_and_the_shared_model(rig, frames):
    # Its own three rounds, so that the test does not depend on the ones before it.
    for i in range(50, 53):
        for cam in CAMS:
            rig.clients[cam].publish(rig.make(cam, frames[cam], i))
        assert rig.spin_until(lambda: all(rig.clients[c].complete(BASE[c] + i) for c in CAMS),
                              60), f'round {i}: not every camera was answered'
    node = rig.diag('', lambda v: int(v.get('frames.processed', 0)) >= 9)
    assert node['cameras'] == 'front,left,right'
    # 3 cameras on torch CPU: one worker per camera, at most one per CPU (plan_workers).
    assert node['inference_workers'] == str(min(3, len(os.sched_getaffinity(0))))
    assert node['backend'] == 'torch' and int(node['batches']) >= 1
    assert 1.0 <= float(node['mean_batch']) <= 3.0
    assert 'latency.batch_inference.p99_ms' in node
    for cam in CAMS:
        v = rig.diag(cam, lambda v: int(v['frames.processed']) >= 3)
        assert v, f'no diagnostics status for camera {cam}'
        for key in ('input_rate_hz', 'output_rate_hz', 'frames.received', 'frames.dropped',
                    'latency.end_to_end.p50_ms', 'latency.end_to_end.p90_ms',
                    'latency.end_to_end.p99_ms'):
            assert key in v, (cam, key)


def test_a_camera_of_bad_frames_and_a_silent_one_do_not_stall_the_others(rig, frames):
    from sensor_msgs.msg import Image
    before = {cam: rig.diag(cam) for cam in CAMS}
    small = frames['front'][:120, :160].copy()
    bad_sent = 0
    for i in range(8):
        bad = Image(height=60, width=80, encoding='rgb8', step=100)   # step < 3 * width
        bad.data = bytes(6000)
        bad.header.stamp.sec = 1_810_500_000 + i
        for _ in range(3):       # 'left' floods bad frames; 'right' is silent
            rig.clients['left'].publish(bad)
            bad_sent += 1
        msg = rig.make('front', small, 100 + i)
        rig.clients['front'].publish(msg)
        assert rig.spin_until(lambda: rig.clients['front'].complete(stamp_key(msg.header)),
                              20), f'front frame {i} was not answered'
    left = rig.diag('left', lambda v: int(v['frames.received'])
                    - int(before['left']['frames.received']) == bad_sent, 20)
    assert left, 'the node did not report every bad frame of camera left'
    errors = sum(int(x) for k, x in left.items() if k.startswith('errors.'))
    dropped = int(left['frames.dropped']) - int(before['left']['frames.dropped'])
    # Every bad frame was either rejected with a reason or replaced by a newer one.
    assert errors + dropped == bad_sent and errors >= 8
    assert int(left['frames.processed']) == int(before['left']['frames.processed'])
    front = rig.diag('front')
    assert not any(k.startswith('errors.') for k in front)
    assert 'frame rejected' in rig.log.read_text() and 'left: ' in rig.log.read_text()


def test_per_camera_drop_counts_match_what_each_sender_saw(rig, frames):
    small = {cam: f[::2, ::2].copy() for cam, f in frames.items()}
    before = {cam: rig.diag(cam) for cam in CAMS}
    hz = {'front': 60, 'left': 30, 'right': 10}
    sent = {cam: [] for cam in CAMS}
    t0 = time.monotonic()
    for step in range(120):             # two seconds: 120 / 60 / 20 frames
        t = step / 60
        for cam in CAMS:
            if step % (60 // hz[cam]) == 0:
                msg = rig.make(cam, small[cam], 1000 + step)
                rig.clients[cam].publish(msg)
                sent[cam].append(stamp_key(msg.header))
        rig.spin_until(lambda: False, max(0.0, t0 + t + 1 / 60 - time.monotonic()))
    rig.spin(2.0)
    for cam in CAMS:
        b = before[cam]

        def delta(v, key, b=b):
            return int(v[key]) - int(b[key])
        v = rig.diag(cam, lambda v: delta(v, 'frames.received') > 0 and
                     delta(v, 'frames.processed') + delta(v, 'frames.dropped') ==
                     delta(v, 'frames.received'), 20)
        assert v, f'{cam}: diagnostics never accounted for every received frame'
        received = delta(v, 'frames.received')
        processed, dropped = delta(v, 'frames.processed'), delta(v, 'frames.dropped')
        client = rig.clients[cam]
        rig.spin_until(lambda: sum(1 for k in sent[cam] if 'mask' in
                                   client.received.get(k, Received()).msgs) >= processed, 10)
        answered = sum(1 for k in sent[cam] if 'mask' in client.received.get(k, Received()).msgs)
        # What the sender saw missing is exactly what the node counted as dropped, plus what
        # never reached it (reliable input, but a busy reader's history can still overflow).
        assert answered == processed, cam
        assert len(sent[cam]) - answered == dropped + (len(sent[cam]) - received), cam
        assert 0.9 * len(sent[cam]) <= received <= len(sent[cam]), cam
        assert client.complete(sent[cam][-1]), f'{cam}: the newest frame was not answered'
        # Several inference workers run side by side, but never one camera twice at once:
        # each camera's masks arrive in the order of its frames.
        times = [client.received[k].times['mask'] for k in sent[cam]
                 if 'mask' in client.received.get(k, Received()).msgs]
        assert times == sorted(times), f'{cam}: masks out of frame order'


def test_multi_camera_yaml_sets_four_cameras_with_their_overrides():
    import yaml
    from pspnet_ros.node.config import NodeConfig
    from pspnet_ros.node.parameters import defaults
    from ros_fixtures import ROOT
    data = yaml.safe_load((ROOT / 'config' / 'multi_camera.yaml').read_text())
    p = defaults()
    for key, value in data['/**']['ros__parameters'].items():
        if isinstance(value, dict):       # a camera's override block
            p.update({f'{key}.{k}': v for k, v in value.items()})
        else:
            p[key] = value
    cfg = NodeConfig.from_parameters(p)
    cams = {c.name: c for c in cfg.cameras}
    assert list(cams) == ['front', 'rear', 'left', 'right'] and cfg.max_batch == 4
    assert cams['front'].use_camera_info and not cams['rear'].use_camera_info
    assert cams['rear'].input_transport == 'compressed'
    assert cams['left'].image_qos == 'reliable' and cams['right'].qos_depth == 1
    assert cams['rear'].topic('image') == 'rear/image' and cams['rear'].output('mask') == \
        '~/rear/mask'


def test_synchronised_batches_serve_one_capture_instant_and_do_not_wait_for_a_silent_camera(
        tmp_path, frames):
    rig = Rig(tmp_path, ['-p', 'image_qos:=reliable', '-p', 'sync_tolerance:=0.005',
                         '-p', 'sync_wait:=1.0', '-p', 'max_image_pixels:=200000'],
              node='pspnet_sync', compressed=())
    try:
        small = {cam: f[::3, ::3].copy() for cam, f in frames.items()}
        t0 = 1_830_000_000_000_000_000

        def capture(i, cams):
            # A triggered rig: one stamp per capture (left's clock 1 ms late, in tolerance).
            keys = {cam: t0 + i * 100_000_000 + 1_000_000 * (cam == 'left') for cam in cams}
            for cam in cams:
                client = rig.clients[cam]
                client.publish(client.make_image(small[cam], keys[cam], frame_id=cam))
            assert rig.spin_until(lambda: all(rig.clients[c].complete(keys[c]) for c in cams),
                                  60), f'capture {i} was not answered on every camera'

        capture(0, CAMS)                 # every camera has published: all three are live

        def counts(v):
            return (int(v.get('sync.complete', 0)), int(v.get('sync.incomplete', 0)),
                    int(v.get('batches', 0)))

        # The node counts a set when it forms and the batch when the backend returns, and a
        # diagnostics message can fall between the two: wait for one that has both.
        before = rig.diag('', lambda v: counts(v)[0] >= 1 and
                          counts(v)[2] >= counts(v)[0] + counts(v)[1])
        assert before, 'no diagnostics after the first capture'
        for i in range(1, 4):
            capture(i, CAMS)
        after = rig.diag('', lambda v: counts(v)[0] >= counts(before)[0] + 3 and
                         counts(v)[2] >= counts(before)[2] + 3)
        assert after, 'the node did not report three more complete synchronised sets'
        # One set, and one backend run, per capture instant.
        assert int(after['sync.complete']) - int(before['sync.complete']) == 3
        assert int(after['batches']) - int(before['batches']) == 3
        assert after.get('sync.incomplete', '0') == '0'
        # The liveness window follows the rig's rate: 3 of right's frame intervals (here the
        # time this loop takes per capture, seconds on a loaded CPU), and at least 1 s.
        right = rig.diag('right', lambda v: 'sync.silence_window_s' in v)
        window = float(right['sync.silence_window_s'])
        assert window >= 1.0
        # 'right' goes silent: once its window has passed it is no longer waited for.
        rig.spin(window + 0.5)
        for i in range(10, 13):
            capture(i, ('front', 'left'))
        last = rig.diag('', lambda v: int(v['sync.complete']) >= int(after['sync.complete'])
                        + 3)
        assert last and last.get('sync.incomplete', '0') == '0', last
    finally:
        assert rig.close() == 0
