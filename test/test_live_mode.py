"""``pspnet-ros live``: a bag replayed through a node it starts, scored over real DDS."""
import json
import subprocess
import sys

from conftest import ROOT
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')


def test_live_replay_scores_a_camvid_bag_through_the_node(camvid, tmp_path):
    from pspnet_ros.evaluation.makebag import make_bag
    bag = tmp_path / 'bag'
    make_bag(camvid / 'val', camvid / 'valannot', bag, rate=1.0, limit=4)
    proc = subprocess.run(
        [sys.executable, '-m', 'pspnet_ros.cli', 'live', str(bag), '--label-topic',
         '/camera/labels', '--start-node', '--params-file', str(ROOT / 'config' / 'cpu.yaml'),
         '--out', str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((tmp_path / 'out' / 'live_report.json').read_text())
    assert rep['frames_sent'] == 4
    # At 1 Hz the node keeps up: nothing is dropped and every frame is scored.
    assert rep['frames_answered'] == 4 and rep['frames_dropped'] == 0
    assert rep['frames_scored'] == 4
    assert rep['metrics']['miou'] > 0.4
    assert rep['latency_ms']['p50'] > 0
    # The backend that ran, from the node's diagnostics (cpu.yaml: torch).
    assert rep['backend'] == 'torch'
    assert 'backend torch' in proc.stdout and 'node up (backend torch on cpu)' in proc.stderr


def test_live_replays_one_bag_onto_two_cameras_of_one_node_and_reports_each(camvid, tmp_path):
    from pspnet_ros.evaluation.makebag import make_bag
    bag = tmp_path / 'bag'
    make_bag(camvid / 'val', camvid / 'valannot', bag, rate=1.0, limit=3)
    proc = subprocess.run(      # one frame per camera every 4 s: slow enough for a busy CPU
        [sys.executable, '-m', 'pspnet_ros.cli', 'live', str(bag), '--cameras', 'front,rear',
         '--label-topic', '/camera/labels', '--start-node', '--rate-factor', '0.25',
         '--out', str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / 'out' / 'live_report.json').read_text())
    assert set(doc['cameras']) == {'front', 'rear'}
    for cam, rep in doc['cameras'].items():
        # A busy machine may drop frames; what is answered is scored, per camera.
        assert rep['frames_sent'] == 3 and rep['frames_answered'] >= 1, cam
        assert rep['frames_answered'] + rep['frames_dropped'] == 3, cam
        assert rep['frames_scored'] == rep['frames_answered'], cam
        assert rep['metrics']['miou'] > 0.4, cam
        assert int(rep['node_diagnostics']['frames.processed']) >= 1, cam
    assert 'front: sent 3, answered' in proc.stdout and 'rear: sent 3' in proc.stdout


def test_a_started_node_whose_configure_fails_is_reported_in_seconds(tmp_path):
    """--start-node watches its node: a configure failure is that node's error in one line,
    exit 2, long before --wait (it waited the whole --wait and blamed a missing node)."""
    import time
    import numpy as np
    from pspnet_ros.evaluation.bagio import BagWriter, image_msg, make_header
    from pspnet_ros.core.rosimage import rgb_to_image_fields
    with BagWriter(tmp_path / 'bag') as bag:
        header = make_header(bag.ts, 10**18, 'camera')
        bag.write('/camera/image_raw', image_msg(bag.ts, header, rgb_to_image_fields(
            np.zeros((36, 48, 3), np.uint8))), 10**18)
    params = tmp_path / 'p.yaml'
    params.write_text(f'/**:\n  ros__parameters:\n    model: {tmp_path}/no_such_card.yaml\n')
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, '-m', 'pspnet_ros.cli', 'live', str(tmp_path / 'bag'), '--start-node',
         '--params-file', str(params), '--wait', '200', '--out', str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if 'error:' in ln]
    assert errors == [f'error: the node started here failed: configure failed: model card not '
                      f'found: {tmp_path}/no_such_card.yaml (its log: {tmp_path}/out/node.log)']
    assert took < 100, took          # the node's start-up and one log poll, not --wait's 200 s


def test_live_refuses_a_topic_count_that_does_not_match_the_cameras(tmp_path, capsys):
    from pspnet_ros.cli import main
    code = main(['live', str(tmp_path), '--cameras', 'a,b,c', '--image-topic', '/x',
                 '--image-topic', '/y'])
    assert code == 2
    assert '--image-topic given 2 times for 3 cameras' in capsys.readouterr().err
