"""The node's account of itself while things change, over real DDS (issue 39): run-time
parameter changes, lifecycle cycling, recovery of the level, the three starvation cases."""
import time

import pytest

from ros_fixtures import NodeUnderTest

pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')
pytestmark = [pytest.mark.ros, pytest.mark.usefixtures('rclpy_context')]

from pspnet_ros.core import occupancy_msg  # noqa: E402
from pspnet_ros.core.segmenter import region_slice  # noqa: E402

from conftest import street_frame  # noqa: E402

NODE = '/pspnet_segmentation'
OUTCOMES = ('frames.processed', 'frames.dropped', 'frames.skipped_no_subscribers',
            'frames.errors', 'frames.discarded_on_transition')
WINDOW = 4.0


@pytest.fixture(scope='module')
def frame():
    return street_frame(240, 320)


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    n = NodeUnderTest(tmp_path_factory.mktemp('counters'),
                      ros_args=['-p', f'diagnostics_window_s:={WINDOW}',
                                '-p', 'starvation_warn_sec:=1.5', '-p', 'log_throttle_sec:=0.0'],
                      client_kwargs={'outputs': ('mask', 'occupancy')})
    yield n
    assert n.close() == 0
    log = n.log.read_text()
    assert 'Traceback' not in log, log


def _set_async(n, name, value):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    if not hasattr(n, '_set_cli'):
        n._set_cli = n.client.create_client(SetParameters, f'{NODE}/set_parameters')
        assert n._set_cli.wait_for_service(30)
    return n._set_cli.call_async(SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg()]))


def _node_status(arr):
    return next(s for s in arr.status if s.name.endswith(': segmentation'))


def test_regions_changed_20_times_a_second_never_mix_two_settings_in_one_frame(node, frame):
    regions = [['a:0,0,0.5,1'], ['a:0,0,0.25,1'], ['a:0,0,0.5,1', 'b:0,0,1,1'],
               ['a:0,0,0.25,1'], ['b:0.1,0.2,0.9,0.8', 'a:0,0,0.5,1']]
    before = node.fresh_diag()
    base = 1_700_039_000_000_000_000
    sent, futures = [], []
    t0 = time.monotonic()
    i = j = 0
    while i < 150:                      # 150 frames at 5 Hz, regions changed at 20 Hz
        now = time.monotonic()
        if now >= t0 + i * 0.2:
            msg = node.client.make_image(frame, base + i * 200_000_000)
            node.client.publish(msg)
            sent.append(base + i * 200_000_000)
            i += 1
        if now >= t0 + j * 0.05:
            futures.append(_set_async(node, 'occupancy_regions', regions[j % len(regions)]))
            j += 1
        node.spin(0.01)
    node.spin(3.0)
    assert all(f.done() and f.result().results[0].successful for f in futures)
    checked = 0
    for key in sent:
        rec = node.client.received.get(key)
        if rec is None or 'occupancy' not in rec.msgs:
            continue
        occ = rec.msgs['occupancy']
        points = occupancy_msg.decode_occupancy(occ.fields, occ.height, occ.width,
                                                occ.point_step, bytes(occ.data))
        assert points[0].pixels == 240 * 320
        for p in points[1:]:
            rows, cols = region_slice(p.box, 240, 320)
            assert p.pixels == (rows.stop - rows.start) * (cols.stop - cols.start), (key, p)
            assert sum(p.counts.values()) == p.pixels
        checked += 1
    # Under load some frames are overwritten by newer ones (dropped): enough remain.
    assert checked >= 50, f'only {checked} of 150 frames answered'
    v = node.fresh_diag()
    assert int(v.get('errors.internal', 0)) - int(before.get('errors.internal', 0)) == 0
    _set_async(node, 'occupancy_regions', ['ahead:0.3,0.5,0.7,1.0'])
    node.spin(0.5)


def test_eight_lifecycle_cycles_under_10hz_frames_keep_the_balance_exactly(node, frame):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    cli = node.client.create_client(ChangeState, f'{NODE}/change_state')
    assert cli.wait_for_service(30)

    def change(tid):
        req = ChangeState.Request()
        req.transition.id = tid
        fut = cli.call_async(req)
        assert node.client.spin_until(node.ex, fut.done, 60) and fut.result().success

    counter = iter(range(10 ** 6))
    small = frame[::2, ::2].copy()
    timer = node.client.create_timer(0.1, lambda: node.client.publish(
        node.client.make_image(small, 1_700_040_000_000_000_000 + next(counter))))
    try:
        for _ in range(8):
            node.spin(0.7)
            change(Transition.TRANSITION_DEACTIVATE)
            node.spin(0.3)
            change(Transition.TRANSITION_ACTIVATE)
        node.spin(0.7)
    finally:
        node.client.destroy_timer(timer)
    node.spin(2.0)                      # idle: nothing waits or runs

    # Idle: nothing waits or runs, and the counts stand still between two messages.
    v, last = {}, None
    for _ in range(30):
        v = node.fresh_diag()
        counts = [v.get(k) for k in ('frames.received',) + OUTCOMES]
        if counts == last and v.get('frames.in_progress', '0') == '0':
            break
        last = counts
    else:
        pytest.fail(f'the node never became idle: {v}')
    received = int(v['frames.received'])
    assert received == sum(int(v.get(k, 0)) for k in OUTCOMES), v
    assert v['frames.in_progress'] == '0'
    assert received > 0
    from pspnet_ros.live import diag_values
    during = [int(diag_values(arr, 'pspnet_segmentation')['frames.in_progress'])
              for arr in node.client.diagnostics]
    assert during and all(0 <= n <= 2 for n in during), during   # one waiting, one running


def test_one_bad_frame_warns_and_the_level_is_ok_again_within_the_window(node, frame):
    from sensor_msgs.msg import Image
    small = frame[::2, ::2].copy()
    for i in range(3):                          # a few good frames: a clean start
        assert node.send_and_wait(node.client.make_image(small, 1_700_041_000_000_000_000 + i))
    bad = Image(height=60, width=80, encoding='weird16', step=160)
    bad.data = bytes(9600)
    bad.header.stamp.sec = 7
    node.client.publish(bad)
    t_bad = time.monotonic()
    seen = []                                   # (seconds after the bad frame, level, message)
    node.spin(0.5)                              # alone in its slot: not overwritten (dropped)
    i = 10
    while time.monotonic() - t_bad < WINDOW + 6:
        node.client.publish(node.client.make_image(small, 1_700_041_000_000_000_000 + i))
        i += 1
        n_before = len(node.client.diagnostics)
        node.spin(0.5)
        for arr in node.client.diagnostics[n_before:]:
            st = _node_status(arr)
            seen.append((time.monotonic() - t_bad, st.level, st.message))
    warn = [s for s in seen if s[1] == b'\x01' and 'frame errors in the last' in s[2]]
    assert warn, seen
    assert warn[0][2].startswith('1 frame errors in the last 4 s'), warn
    last_warn = max(t for t, level, _ in seen if level != b'\x00')
    # OK again within the window (plus one diagnostics period and the delivery slack).
    assert last_warn < WINDOW + 1.0 + 1.0, seen
    assert seen[-1][1:] == (b'\x00', 'ok'), seen
    v = node.fresh_diag()
    assert int(v['errors.unsupported_encoding']) >= 1      # the total stays a counter


def test_frames_missing_from_regular_stamps_are_inferred_as_gaps(node, frame):
    # The case: 1280x720 at 100 Hz, where a few frames are neither received nor
    # reported lost. Stamps 10 ms apart throughout; the lead-in and the tail are sent slowly
    # (no loss there), so every frame missing from the burst lies between two received ones.
    import cv2
    big = node.client.make_image(cv2.resize(frame, (1280, 720)), 0)
    base = 1_700_043_000_000_000_000
    before = node.fresh_diag()

    def send(i):
        big.header.stamp.sec, big.header.stamp.nanosec = divmod(base + i * 10_000_000,
                                                                1_000_000_000)
        node.client.pub.publish(big)
    for i in range(12):
        send(i)
        node.spin(0.3)
    t0 = time.monotonic()
    for i in range(12, 212):                    # 200 frames at 100 Hz
        while time.monotonic() < t0 + (i - 12) * 0.01:
            pass
        send(i)
    node.spin(0.5)
    for i in range(212, 216):
        send(i)
        node.spin(0.5)
    node.spin(2.0)
    v = node.fresh_diag()

    def delta(key):
        return int(v.get(key, 0)) - int(before.get(key, 0))
    missing = 216 - delta('frames.received')
    if missing == 0:
        pytest.skip('no frame went missing in transport this run: nothing to infer')
    assert delta('frames.gaps_inferred') == missing, (missing, delta('frames.lost'))


def test_stalled_no_publisher_and_never_delivered_are_three_different_warnings(node, frame):
    from std_msgs.msg import String

    def note(words, timeout=15):
        found = []

        def check():
            for arr in node.client.diagnostics[-2:]:
                st = _node_status(arr)
                if st.level == b'\x01' and all(w in st.message for w in words):
                    found.append(st.message)
                    return True
            return False
        node.client.spin_until(node.ex, check, timeout)
        return found[0] if found else ''

    small = frame[::2, ::2].copy()
    assert node.send_and_wait(node.client.make_image(small, 1_700_042_000_000_000_000))
    stalled = note(['camera image stalled: its last frame arrived'])
    assert stalled and 'Fast DDS' not in stalled
    node.client.destroy_publisher(node.client.pub)
    gone = note(['no publisher on /image'])
    assert gone and 'Fast DDS' not in gone
    # A publisher of another type on the topic: matched in the graph, never delivers.
    node.client.pub = node.client.create_publisher(String, '/image', 10)
    never = note(['publisher(s) matched on /image but no frame arrived', 'frames.lost'])
    assert never and 'fastdds_large_frames.xml' in never
    log = node.log.read_text()
    assert 'stalled' in log and 'no publisher on /image' in log
