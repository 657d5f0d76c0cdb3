"""The camera set and batch scheduler, on its own: slots, batching, fairness, sync sets."""
import ast
from collections import Counter
from pathlib import Path

import pytest

from pspnet_ros.node.cameras import CameraSet, check_camera_names

CAMS = ('front', 'left', 'right')


def synced_rig() -> CameraSet:
    """The three cameras in sync sets: 5 ms tolerance, 100 ms wait, silent after 1 s."""
    return CameraSet(CAMS, sync_tolerance=0.005, sync_wait=0.1, silent_after=1.0)


def assert_front_and_left_run_as_a_whole_set(cs: CameraSet, now: float, front_stamp: float,
                                             left_stamp: float) -> None:
    """front and left arrive at ``now``: they run at once as a complete set, right (silent)
    is not waited for."""
    cs.put('front', 'a', stamp=front_stamp, now=now)
    cs.put('left', 'b', stamp=left_stamp, now=now)
    batch, _ = cs.take(now=now)
    assert batch.cameras == ['front', 'left'] and batch.complete


def test_camera_module_imports_nothing_from_ros():
    path = Path(__file__).resolve().parents[1] / 'pspnet_ros' / 'node' / 'cameras.py'
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or '').split('.')[0] if not node.level else '.')
    assert imported <= {'__future__', 'collections', 'dataclasses', 're', 'statistics',
                        'threading', 'time', 'typing'}


def test_newest_frame_wins_and_each_overwrite_is_a_drop_of_that_camera():
    cs = CameraSet(CAMS, max_batch=4)
    for i in range(5):
        cs.put('front', f'f{i}', stamp=i, now=0.0)
    cs.put('left', 'l0', stamp=0, now=0.0)
    batch, _ = cs.take(now=0.0)
    assert [(f.camera, f.payload) for f in batch.frames] == [('front', 'f4'), ('left', 'l0')]
    assert [(s.received, s.dropped, s.taken) for s in cs.slots.values()] == [
        (5, 4, 1), (1, 0, 1), (0, 0, 0)]
    assert cs.take(now=0.0) == (None, None)


def test_a_batch_takes_every_waiting_camera_up_to_max_batch_in_camera_order():
    cs = CameraSet(CAMS, max_batch=2)
    for cam in reversed(CAMS):
        cs.put(cam, cam, now=0.0)
    first, _ = cs.take(now=0.0)
    assert first.cameras == ['front', 'left']
    second, _ = cs.take(now=0.0)
    assert second.cameras == ['right']


@pytest.mark.parametrize('max_batch', [1, 2, 3, 4])
def test_under_overload_every_camera_gets_the_same_share(max_batch):
    # Each round every camera publishes several frames (front far more than the others),
    # more than the worker can take: outputs per camera stay equal, the rest are drops.
    cs = CameraSet(CAMS, max_batch=max_batch)
    per_round = {'front': 7, 'left': 2, 'right': 1}
    served = Counter()
    for r in range(60):
        for cam, n in per_round.items():
            for _ in range(n):
                cs.put(cam, r, now=float(r))
        batch, _ = cs.take(now=float(r))
        served.update(batch.cameras)
    rate = 60 * min(max_batch, 3) / 3
    assert served == {c: rate for c in CAMS}
    for cam, n in per_round.items():
        slot = cs.slots[cam]
        waiting = int(slot.frame is not None)
        assert slot.received == 60 * n
        assert slot.dropped == slot.received - slot.taken - waiting


def test_a_silent_camera_never_holds_back_the_others():
    cs = CameraSet(CAMS, max_batch=3)
    served = Counter()
    for r in range(10):
        cs.put('front', r, now=float(r))
        cs.put('left', r, now=float(r))
        batch, _ = cs.take(now=float(r))
        served.update(batch.cameras)
    assert served == {'front': 10, 'left': 10}


def test_sync_set_within_tolerance_runs_as_soon_as_every_live_camera_has_a_frame():
    cs = CameraSet(CAMS, max_batch=1, sync_tolerance=0.005, sync_wait=0.1)
    for cam, stamp in zip(CAMS, (10.000, 10.003, 9.998)):
        cs.put(cam, cam, stamp=stamp, now=0.0)
    batch, _ = cs.take(now=0.0)
    assert batch.cameras == list(CAMS) and batch.complete   # taken whole despite max_batch
    assert (cs.sync_complete, cs.sync_incomplete) == (1, 0)


def test_incomplete_sync_set_waits_the_bounded_time_then_runs_and_is_counted():
    cs = synced_rig()
    for cam in CAMS:                       # all three are live
        cs.put(cam, 'old', stamp=9.0, now=0.0)
    cs.take(now=0.0)
    cs.put('front', 'a', stamp=10.0, now=0.5)
    cs.put('left', 'b', stamp=10.002, now=0.51)
    cs.put('right', 'late', stamp=10.2, now=0.52)   # outside the tolerance
    assert cs.take(now=0.55) == (None, pytest.approx(0.05))
    batch, _ = cs.take(now=0.6)
    assert batch.cameras == ['front', 'left'] and not batch.complete
    assert (cs.sync_complete, cs.sync_incomplete) == (1, 1)
    assert cs.slots['right'].frame.payload == 'late'     # kept for the next set


def test_sync_does_not_wait_for_a_camera_that_went_silent():
    cs = synced_rig()
    for i in range(3):                                   # 10 Hz
        for cam in CAMS:
            cs.put(cam, 'x', stamp=1.0 + i / 10, now=i / 10)
        cs.take(now=i / 10)
    # right last published at 0.2
    assert_front_and_left_run_as_a_whole_set(cs, now=3.0, front_stamp=5.0, left_stamp=5.001)


def test_a_slow_rig_keeps_its_sets_whole_the_liveness_window_follows_its_rate():
    # Triggered every 2 s: with a fixed 1 s window the first camera of each capture would find
    # the others silent and run alone. The window is 3 frame intervals of each camera.
    cs = synced_rig()
    for i in range(4):
        t = 2.0 * i
        cs.put('front', i, stamp=100.0 + i, now=t)
        if i:   # from the second capture on, every camera is live and is waited for
            assert cs.take(now=t) == (None, pytest.approx(0.1))
        cs.put('left', i, stamp=100.0 + i, now=t + 0.01)
        cs.put('right', i, stamp=100.0 + i, now=t + 0.02)
        batch, _ = cs.take(now=t + 0.02)
        assert batch.cameras == list(CAMS) and batch.complete, (i, batch.cameras)
    assert cs.silence_window('right') == pytest.approx(6.0)
    assert (cs.sync_complete, cs.sync_incomplete) == (4, 0)
    # right dies: waited for (bounded) within its window, not after it.
    cs.put('front', 'a', stamp=108.0, now=8.0)
    cs.put('left', 'a', stamp=108.0, now=8.0)
    assert cs.take(now=8.0) == (None, pytest.approx(0.1))
    assert not cs.take(now=8.1)[0].complete
    # right last sent at 6.02
    assert_front_and_left_run_as_a_whole_set(cs, now=12.1, front_stamp=112.0, left_stamp=112.0)


def test_a_fast_rig_stops_waiting_for_a_dead_camera_after_silent_after():
    cs = synced_rig()
    for i in range(10):                                  # 30 Hz
        for cam in CAMS:
            cs.put(cam, i, stamp=i / 30, now=i / 30)
        assert cs.take(now=i / 30)[0].complete
    assert cs.silence_window('front') == pytest.approx(1.0)   # 3 x 33 ms < 1 s
    # right silent for 1.7 s
    assert_front_and_left_run_as_a_whole_set(cs, now=2.0, front_stamp=2.0, left_stamp=2.0)


def test_a_camera_whose_frame_of_the_instant_already_ran_is_not_waited_for():
    cs = synced_rig()
    cs.put('front', 'a', stamp=5.0, now=0.0)      # nobody else live yet: runs alone
    assert cs.take(now=0.0)[0].cameras == ['front']
    cs.put('left', 'b', stamp=5.001, now=0.01)    # front's frame of 5.0 already ran
    batch, _ = cs.take(now=0.01)
    assert batch.cameras == ['left'] and batch.complete
    cs.put('front', 'c', stamp=5.1, now=0.1)      # the next instant waits for left again
    assert cs.take(now=0.1) == (None, pytest.approx(0.1))
    assert (cs.sync_complete, cs.sync_incomplete) == (2, 0)


def test_wait_returns_a_due_batch_and_close_ends_it():
    cs = CameraSet(CAMS)
    cs.put('left', 'x', now=0.0)
    assert cs.wait(1.0).cameras == ['left']
    assert cs.wait(0.01) is None
    cs.close()
    cs.put('left', 'y')
    assert cs.wait(5.0) is None


def test_with_several_workers_a_camera_in_flight_waits_for_done():
    # Two workers: each takes cameras of its own, and a camera whose frame is still being
    # processed is not served again (its outputs keep the order of its frames).
    cs = CameraSet(CAMS, max_batch=2, one_in_flight=True)
    for cam in CAMS:
        cs.put(cam, f'{cam}0', now=0.0)
    first, _ = cs.take(now=0.0)
    assert first.cameras == ['front', 'left']
    cs.put('front', 'front1', now=0.1)
    second, _ = cs.take(now=0.1)
    assert second.cameras == ['right']               # front1 waits: front0 is in flight
    assert cs.take(now=0.1) == (None, None)
    cs.done(first)
    third, _ = cs.take(now=0.2)
    assert [(f.camera, f.payload) for f in third.frames] == [('front', 'front1')]
    # Without the flag (one worker) a camera is served again at once, as before.
    cs = CameraSet(CAMS, max_batch=1)
    cs.put('front', 'a', now=0.0)
    assert cs.take(now=0.0)[0].cameras == ['front']
    cs.put('front', 'b', now=0.1)
    assert cs.take(now=0.1)[0].cameras == ['front']


def test_done_wakes_a_worker_waiting_for_a_camera_in_flight():
    import threading
    cs = CameraSet(['front'], one_in_flight=True)
    cs.put('front', 'a', now=0.0)
    first = cs.wait(1.0)
    cs.put('front', 'b')
    got = []
    waiter = threading.Thread(target=lambda: got.append(cs.wait(10.0)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got           # 'b' waits while 'a' is in flight
    cs.done(first)
    waiter.join(5.0)
    assert [f.payload for f in got[0].frames] == ['b']


def test_default_camera_set_is_one_unnamed_camera():
    assert CameraSet([]).names == ('',)


@pytest.mark.parametrize('names,match', [
    (['front', 'front'], "'front' appears twice"),
    (['1cam'], "'1cam' must start with a letter"),
    (['a/b'], "'a/b' must start with a letter"),
])
def test_bad_camera_names_are_refused(names, match):
    with pytest.raises(ValueError, match=match):
        check_camera_names(names)


def test_bad_scheduler_settings_are_refused():
    with pytest.raises(ValueError, match='max_batch must be >= 1, got 0'):
        CameraSet(CAMS, max_batch=0)
    with pytest.raises(ValueError, match=r'sync_tolerance \(-1.0\)'):
        CameraSet(CAMS, sync_tolerance=-1.0)
