"""Bag evaluation on a real local Ray instance (num_cpus=2): merged equals sequential, faults."""
import glob
import importlib.util
import os
from pathlib import Path
import signal

from conftest import CAMVID, DEFAULT_CARD, need
import pytest
import yaml

# A marker, not importorskip: a module-level skip raised while the launch_testing plugin
# imports the module during collection ends the whole colcon test session.
pytestmark = pytest.mark.skipif(importlib.util.find_spec('ray') is None,
                                reason="Ray is optional: pip install '.[ray]' (make test-ray)")

from eval_helpers import dying_worker  # noqa: E402
from pspnet_ros.evaluation.evaluator import EvalConfig  # noqa: E402
from pspnet_ros.evaluation.fleet import FleetConfig, FleetError, run_fleet  # noqa: E402
from pspnet_ros.evaluation.makebag import make_bag  # noqa: E402
from pspnet_ros.evaluation.report import exit_code  # noqa: E402
from pspnet_ros.evaluation.shards import make_evaluator  # noqa: E402
from test_eval_shards import assert_same_report, camvid_labels, write_pred_bag  # noqa: E402


@pytest.fixture(scope='module')
def local_ray():
    import ray
    ray.init(num_cpus=2, include_dashboard=False, logging_level='warning',
             _node_ip_address='127.0.0.1')
    yield
    ray.shutdown()


@pytest.fixture(scope='module')
def small_card(tmp_path_factory):
    """The shipped CamVid model at a small input size (fast on a shared CPU)."""
    card = yaml.safe_load(DEFAULT_CARD.read_text())
    card['weights'] = str(DEFAULT_CARD.parent / card['weights'])
    card['input_size'] = [97, 129]
    path = tmp_path_factory.mktemp('card') / 'small.yaml'
    path.write_text(yaml.safe_dump(card))
    return str(path)


@pytest.fixture(scope='module')
def camvid_bags(tmp_path_factory):
    """Four 3-frame bags made with make-bag (sqlite3, mcap, JPEG), a truncated one, and a
    12-frame bag that gets sharded."""
    need(CAMVID)
    d = tmp_path_factory.mktemp('fleet')
    src = (CAMVID / 'val', CAMVID / 'valannot')
    for i, (storage, compressed) in enumerate([('sqlite3', False), ('mcap', False),
                                               ('sqlite3', True), ('mcap', True)]):
        make_bag(*src, d / f'drive{i}', storage=storage, compressed=compressed, limit=3,
                 image_topic='/cam/image')
    make_bag(*src, d / 'corrupt', limit=3, image_topic='/cam/image')
    db3 = glob.glob(str(d / 'corrupt' / '*.db3'))[0]
    os.truncate(db3, os.path.getsize(db3) // 2)
    make_bag(*src, d / 'long', limit=12, image_topic='/cam/image')
    return d


def model_cfg(bags, out):
    return EvalConfig(bags=[str(b) for b in bags], image_topic='/cam/image',
                      label_topic='/camera/labels', out=str(out), progress=False)


def single_thread_sequential(cfg, card):
    """The single-process run, with the workers' torch thread count: CPU convolutions round
    differently with another thread count, which can move a few pixels."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_evaluator(cfg, card).run()
    finally:
        torch.set_num_threads(threads)


def test_merged_report_equals_sequential_with_the_model(local_ray, camvid_bags, small_card,
                                                        tmp_path):
    """Four make-bag bags (rgb8 and JPEG, sqlite3 and MCAP), a truncated one and a 12-frame
    bag split in three time ranges, on two workers."""
    bags = [camvid_bags / n for n in ('drive0', 'drive1', 'drive2', 'drive3', 'corrupt', 'long')]
    seq = single_thread_sequential(model_cfg(bags, tmp_path / 'seq'), small_card)
    report = run_fleet(model_cfg(bags, tmp_path / 'ray'),
                       FleetConfig(workers=2, shard_frames=4, model=small_card))
    assert_same_report(report, seq)
    assert report['frames']['read'] == 24 and report['frames']['scored'] == 24
    assert 'database disk image is malformed' in report['bags'][4]['error']
    fl = report['fleet']
    assert [s['range'].split(':')[0] for s in fl['shards']] == ['whole bag'] * 5 + [
        'part 1/3', 'part 2/3', 'part 3/3']
    assert [s['frames'] for s in fl['shards']] == [3, 3, 3, 3, 0, 4, 4, 4]
    assert (fl['workers'], fl['nodes'], fl['retries'], fl['failed_shards']) == (2, 1, 0, 0)
    assert exit_code(report) == exit_code(seq) == 1
    for name in ('report.json', 'summary.md', 'iou.png', 'samples.png'):
        assert (tmp_path / 'ray' / name).is_file()


@pytest.fixture(scope='module')
def pred_bags(tmp_path_factory):
    """Model-free bags: six 4-frame bags and a 12-frame one (sharded), from CamVid labels."""
    d = tmp_path_factory.mktemp('pred')
    bags = [write_pred_bag(d / f'p{i}', camvid_labels(5 * i, 5)) for i in range(6)]
    return bags + [write_pred_bag(d / 'plong', camvid_labels(40, 13))]


def pred_cfg(bags, out):
    return EvalConfig(bags=[str(b) for b in bags], pred_topic='/pred',
                      label_topic='/camera/labels', out=str(out), progress=False)


def test_killed_worker_loses_no_shard(local_ray, pred_bags, tmp_path):
    """SIGKILL one worker process mid-run: its shard is retried on a new worker and the
    merged report is still complete."""
    seq = make_evaluator(pred_cfg(pred_bags, tmp_path / 'seq'), label_set='camvid').run()
    killed = []

    def kill_one(frames, pids):
        if frames and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    report = run_fleet(pred_cfg(pred_bags, tmp_path / 'ray'),
                       FleetConfig(workers=2, shard_frames=4, label_set='camvid'),
                       on_progress=kill_one)
    assert killed
    fl = report['fleet']
    assert fl['retries'] == 1 and fl['failed_shards'] == 0
    assert [s['attempts'] for s in fl['shards']].count(2) == 1
    assert_same_report(report, seq)
    assert exit_code(report) == 0


def test_shard_that_keeps_crashing_is_reported_and_the_rest_merged(
        local_ray, pred_bags, tmp_path):
    """A worker dies on every try of one bag: that shard fails after one retry, the report
    says why and equals a sequential run without that bag; the exit code says partial."""
    report = run_fleet(pred_cfg(pred_bags, tmp_path / 'ray'),
                       FleetConfig(workers=2, shard_frames=4, label_set='camvid'),
                       worker=dying_worker('p2', 2))
    others = [b for b in pred_bags if b.name != 'p2']
    seq = make_evaluator(pred_cfg(others, tmp_path / 'seq'), label_set='camvid').run()
    fl = report['fleet']
    failed = [s for s in fl['shards'] if s['status'] == 'failed']
    assert [(Path(s['bag']).name, s['attempts']) for s in failed] == [('p2', 2)]
    assert 'worker process died' in failed[0]['error']
    assert (fl['retries'], fl['failed_shards']) == (1, 1)
    bag = report['bags'][2]
    assert bag['error'].startswith(f'evaluation of {pred_bags[2]} failed: the worker process '
                                   'died')
    assert bag['frames_read'] == 0
    for key in ('metrics', 'confusion'):
        assert report[key] == seq[key]
    assert report['frames'] == seq['frames']
    assert exit_code(report) == 1
    assert 'failed shard' in (tmp_path / 'ray' / 'summary.md').read_text()


def test_worker_that_cannot_load_the_model_is_one_clear_error(local_ray, pred_bags, tmp_path):
    with pytest.raises(FleetError, match='a Ray worker could not start: .*no_such_card.yaml'):
        run_fleet(model_cfg(pred_bags[:1], tmp_path / 'r'),
                  FleetConfig(workers=1, model=str(tmp_path / 'no_such_card.yaml')))
