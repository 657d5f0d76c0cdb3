"""The node's status from snapshots, without DDS: values, window, transport cases, balance."""
import subprocess
import sys

import pytest

from pspnet_ros.node import diagnostics as d
from pspnet_ros.node.cameras import CameraSet
from pspnet_ros.node.stats import Counters, RecentRise, StampGaps


def cam(**kw):
    base = dict(name='', topic='/image', publishers=1, delivered=True, quiet_s=0.1,
                last_frame_age=0.1)
    return d.CameraSnapshot(**{**base, **kw})


def test_a_camera_that_delivered_then_stopped_is_a_stalled_camera_not_a_transport_fault():
    kind, msg = d.transport(cam(name='front', topic='/front/image', quiet_s=12.3,
                                last_frame_age=12.3), warn_after=3.0)
    assert kind == 'stalled'
    assert msg == ('front: camera front stalled: its last frame arrived 12.3 s ago on '
                   '/front/image (1 publisher(s) still matched)')
    assert 'Fast DDS' not in msg


def test_a_matched_publisher_that_never_delivered_gets_the_transport_advice():
    kind, msg = d.transport(cam(delivered=False, quiet_s=5.0, last_frame_age=None,
                                counters={'frames.lost': 4}), warn_after=3.0)
    assert kind == 'never_delivered'
    assert msg.startswith('1 publisher(s) matched on /image but no frame arrived for 5 s '
                          '(frames.lost 4): camera-sized frames need the Fast DDS profile')
    assert 'fastdds_large_frames.xml' in msg


def test_no_publisher_at_all_says_so_and_names_the_topic():
    kind, msg = d.transport(cam(publishers=0, delivered=False, unmatched_s=8.0), 3.0)
    assert kind == 'no_publisher'
    assert msg == ('no publisher on /image for 8 s: start the camera, or remap the image '
                   'topic to the one it publishes')
    assert d.transport(cam(publishers=0, unmatched_s=2.0), 3.0) == ('', '')


def test_the_three_starvation_cases_give_three_different_messages():
    msgs = {d.transport(c, 3.0)[1] for c in (
        cam(publishers=0, unmatched_s=9.0),
        cam(delivered=False, quiet_s=9.0, last_frame_age=None),
        cam(quiet_s=9.0, last_frame_age=9.0))}
    assert len(msgs) == 3 and '' not in msgs


def test_recent_loss_keeps_the_transport_advice_and_frames_that_arrive_give_none():
    kind, msg = d.transport(cam(lost_age=2.0, counters={'frames.lost': 7}), 3.0)
    assert kind == 'lost' and 'frames.lost 7' in msg and 'fastdds_large_frames.xml' in msg
    assert d.transport(cam(lost_age=30.0), 3.0) == ('', '')
    assert d.transport(cam(), 3.0) == ('', '')


def test_level_counts_only_the_errors_of_the_window_and_returns_to_ok():
    recent = RecentRise()
    m = d.ModelSnapshot(device='cpu')
    levels = []
    errors = 0
    for t in range(0, 30):          # one diagnostics message a second; a bad frame at 5.5 s
        if t == 6:
            errors = 1
        c = cam(counters={'frames.received': t, 'frames.processed': t - errors,
                          'frames.errors': errors, 'errors.too_large': errors})
        st, _ = d.statuses('/n', m, [c], multi_camera=False, warn_after=3.0, window=10.0,
                           recent=lambda name, total: recent.rise(total, float(t), 10.0))
        levels.append((st[0].level, st[0].message))
    assert levels[5] == (d.OK, 'ok')
    assert levels[6] == (d.WARN, '1 frame errors in the last 10 s')
    assert all(lv == d.WARN for lv, _ in levels[6:16])
    assert levels[16] == (d.OK, 'ok')         # within the window after the bad frame
    assert all(lv == d.OK for lv, _ in levels[16:])
    assert st[0].values['errors.too_large'] == '1'      # the total stays a counter


def test_the_window_starts_at_zero_for_a_young_node():
    r = RecentRise()
    assert r.rise(3, 1.0, 10.0) == 3
    assert r.rise(3, 2.0, 10.0) == 3
    assert r.rise(3, 12.5, 10.0) == 0


def test_fallback_and_notes_warn_and_the_node_status_sums_named_cameras():
    m = d.ModelSnapshot(backend='torch', device='cpu', model='m', backend_note='fell back',
                        counters={'batches': 4, 'batches.frames': 6}, threads=2, cpus=(0, 1))
    cams = [cam(name='a', topic='/a/image', counters={'frames.received': 5,
                                                      'frames.processed': 3,
                                                      'frames.dropped': 2}),
            cam(name='b', topic='/b/image', publishers=0, delivered=False, unmatched_s=9.0,
                counters={'frames.received': 1, 'frames.discarded_on_transition': 1})]
    st, notes = d.statuses('/n', m, cams, multi_camera=True, warn_after=3.0, window=10.0,
                           recent=lambda name, total: 0)
    assert [s.name for s in st] == ['/n: segmentation', '/n: camera a', '/n: camera b']
    node = st[0]
    assert node.level == d.WARN
    assert node.message.startswith('running on fallback backend; b: no publisher on /b/image')
    assert node.values['frames.received'] == '6'
    assert node.values['frames.in_progress'] == '0'
    assert node.values['mean_batch'] == '1.50'
    assert node.values['cameras'] == 'a,b'
    assert node.values['loss_reporting'] == d.LOSS_REPORTING
    assert (st[1].level, st[1].message) == (d.OK, 'ok')
    assert st[2].level == d.WARN and notes['b'][0] == 'no_publisher'


def test_in_progress_is_what_is_neither_waiting_nor_at_an_outcome():
    c = {'frames.received': 10, 'frames.processed': 4, 'frames.dropped': 2,
         'frames.skipped_no_subscribers': 1, 'frames.errors': 1,
         'frames.discarded_on_transition': 1}
    assert d.in_progress(c) == 1


def test_the_scheduler_counts_into_the_node_counters_one_set():
    counters = {'front': Counters()}
    totals = Counters()
    cs = CameraSet(['front'], counters=counters, set_counters=totals)
    for i in range(3):
        cs.put('front', i, stamp=i, now=0.0)
    assert counters['front'].snapshot() == {'frames.received': 3, 'frames.dropped': 2}
    assert cs.slots['front'].received == 3 and cs.slots['front'].dropped == 2
    cs.put('front', 9, now=0.0)
    assert cs.clear() == 1
    assert counters['front'].get('frames.discarded_on_transition') == 1
    assert d.in_progress(counters['front'].snapshot()) == 0
    assert not hasattr(cs, 'rounds')


@pytest.mark.parametrize('lost_at, expect', [((), 0), ((12,), 1), ((12, 13, 14), 3),
                                             ((10, 18, 25), 3), ((3,), 0)])
def test_gaps_in_regular_stamps_are_counted_as_missing_frames(lost_at, expect):
    # Eight steps before the period is known: a frame lost earlier is not seen (3,).
    g = StampGaps()
    missing = sum(g.add(1000.0 + i * 0.01) for i in range(30) if i not in lost_at)
    assert missing == expect


def test_irregular_stamps_a_restart_or_a_long_pause_infer_nothing():
    g = StampGaps()
    stamps = [0.0, 0.01, 0.05, 0.06, 0.2, 0.21, 0.5, 0.52, 0.9, 1.0, 1.3, 1.31]
    assert sum(g.add(100 + s) for s in stamps) == 0
    g = StampGaps()
    assert sum(g.add(10.0 + i * 0.1) for i in range(12)) == 0
    assert g.add(10.0 + 60.0) == 0                  # a pause of 600 periods: not a loss
    assert g.add(5.0) == 0                          # stamps went back: a replay restarted
    assert sum(g.add(5.0 + i * 0.1) for i in range(1, 12)) == 0


def test_the_status_rules_import_no_ros():
    code = ('import sys, pspnet_ros.node.diagnostics\n'
            'bad = [n for n in sys.modules if n.split(".")[0] in ("rclpy", "diagnostic_msgs", '
            '"sensor_msgs", "rcl_interfaces")]\n'
            'sys.exit(1 if bad else 0)\n')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0
