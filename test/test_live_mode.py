"""``pspnet-ros live``: a bag replayed through a node it starts, scored over real DDS."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros
pytest.importorskip('rclpy', reason='rclpy (ROS 2) is not installed')


def test_live_replay_scores_a_camvid_bag_through_the_node(camvid, tmp_path):
    from pspnet_ros.evaluation.makebag import make_bag
    bag = tmp_path / 'bag'
    make_bag(camvid / 'val', camvid / 'valannot', bag, rate=1.0, limit=4)
    proc = subprocess.run(
        [sys.executable, '-m', 'pspnet_ros.cli', 'live', str(bag), '--label-topic',
         '/camera/labels', '--start-node', '--out', str(tmp_path / 'out')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((tmp_path / 'out' / 'live_report.json').read_text())
    assert rep['frames_sent'] == 4
    # At 1 Hz the node keeps up: nothing is dropped and every frame is scored.
    assert rep['frames_answered'] == 4 and rep['frames_dropped'] == 0
    assert rep['frames_scored'] == 4
    assert rep['metrics']['miou'] > 0.4
    assert rep['latency_ms']['p50'] > 0
