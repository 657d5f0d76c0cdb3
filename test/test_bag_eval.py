"""Bag evaluation: make-bag, stamp matching, scoring recorded masks, model replay, bad bags."""
import json
from pathlib import Path
import shutil

from conftest import BAGS, CAMVID, DEFAULT_CARD, need
import numpy as np
import pytest

from pspnet_ros.cli import main
from pspnet_ros.core.labels import CAMVID as CAMVID_SET
from pspnet_ros.core.metrics import confusion_matrix, scores
from eval_helpers import read_all
from pspnet_ros.evaluation.bagio import BagSource, BagWriter, make_header
from pspnet_ros.evaluation.evaluator import BagEvaluator, EvalConfig
from pspnet_ros.evaluation.report import exit_code
from pspnet_ros.evaluation.makebag import make_bag
from pspnet_ros.evaluation.matching import LabelDir, parse_stamp, StampMatcher

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def write_label_bag(path, frames, storage='sqlite3'):
    """frames: (topic, stamp ns, (H, W) uint8 ids); bag time = stamp."""
    with BagWriter(path, storage) as bag:
        for topic, stamp, lab in frames:
            bag.write_labels(topic, make_header(bag.ts, stamp, 'camera'), lab, stamp)


def run_eval(tmp_path, bags, **kw):
    kw.setdefault('progress', False)
    cfg = EvalConfig(bags=[str(b) for b in bags], out=str(tmp_path / 'report'), **kw)
    if kw.get('pred_topic'):
        ev = BagEvaluator(cfg, class_names=CAMVID_SET.classes,
                          palette=CAMVID_SET.palette_array(), ignore_index=11)
    else:
        from pspnet_ros.core import Segmenter
        ev = BagEvaluator(cfg, segmenter=Segmenter(DEFAULT_CARD, input_size=(97, 129)))
    return ev.run()


@pytest.fixture(scope='module')
def camvid_bag(tmp_path_factory):
    need(CAMVID)
    out = tmp_path_factory.mktemp('bags') / 'camvid3'
    make_bag(CAMVID / 'val', CAMVID / 'valannot', out, rate=20.0, limit=3)
    return out


# -- make-bag ---------------------------------------------------------------------------------
@pytest.mark.parametrize('storage, compressed', [('sqlite3', False), ('mcap', True)])
def test_make_bag_writes_images_and_labels_with_identical_headers(
        tmp_path, storage, compressed):
    need(CAMVID)
    topic = '/cam/image/compressed' if compressed else '/cam/image'
    summary = make_bag(CAMVID / 'val', CAMVID / 'valannot', tmp_path / 'b', rate=4.0,
                       compressed=compressed, storage=storage, image_topic=topic,
                       label_topic='/cam/labels', frame_id='cam0', limit=2, start_stamp=100.5)
    assert summary['frames'] == 2
    with BagSource(tmp_path / 'b') as src:
        assert src.storage == storage
        assert src.topics == {topic: 'sensor_msgs/msg/CompressedImage' if compressed
                              else 'sensor_msgs/msg/Image',
                              '/cam/labels': 'sensor_msgs/msg/Image'}
        conns = {c.topic: c for c in src._connections}
        assert 'uint32 height' in conns['/cam/labels'].msgdef.data
        assert conns['/cam/labels'].ext.offered_qos_profiles[0].depth == 10
    msgs = read_all(tmp_path / 'b')
    images = [(t, m) for tp, t, m in msgs if tp == topic]
    labels = [(t, m) for tp, t, m in msgs if tp == '/cam/labels']
    assert [t for t, _ in images] == [100_500_000_000, 100_750_000_000]
    for (_, im), (_, lab) in zip(images, labels):
        assert im.header.stamp == lab.header.stamp and lab.header.frame_id == 'cam0'
        assert (lab.encoding, lab.width, lab.height, lab.step) == ('mono8', 480, 360, 480)
    if compressed:
        assert images[0][1].format == 'rgb8; jpeg compressed bgr8'
    else:
        assert images[0][1].encoding == 'rgb8'


def test_make_bag_refuses_to_overwrite(camvid_bag):
    with pytest.raises(FileExistsError, match='exists already'):
        make_bag(CAMVID / 'val', CAMVID / 'valannot', camvid_bag, limit=1)


# -- matching ---------------------------------------------------------------------------------
def test_matcher_pairs_exact_stamps_in_either_order():
    m = StampMatcher()
    assert m.add_image(10, 'a') == []
    assert m.add_label(10, 'A') == [('a', 'A')]
    assert m.add_label(20, 'B') == []
    assert m.add_image(20, 'b') == [('b', 'B')]
    assert m.flush() == [] and m.labels_unmatched == 0


def test_matcher_nearest_within_tolerance_waits_for_a_better_label():
    m = StampMatcher(tolerance_ns=5)
    assert m.add_image(100, 'a') == []
    assert m.add_label(97, 'early') == []       # a closer label may still come
    assert m.add_label(101, 'close') == []
    assert m.add_label(120, 'late') == [('a', 'close')]
    assert m.add_image(200, 'b') == []
    assert m.flush() == [('b', None)]
    assert m.labels_unmatched == 2               # 97 and 120


def test_matcher_bounds_waiting_images():
    m = StampMatcher(max_pending=2)
    out = [m.add_image(s, s) for s in (1, 2, 3)]
    assert out == [[], [], [(1, None)]]


def test_label_dir_by_stamp_and_by_index(tmp_path):
    assert parse_stamp('1700000000.25') == 1_700_000_000_250_000_000
    assert parse_stamp('1700000000123456789') == 1_700_000_000_123_456_789
    assert parse_stamp('0001TP_008550') is None and parse_stamp('12') is None
    d = tmp_path / 'stamps'
    d.mkdir()
    for name in ('1700000000.000000000.png', '1700000000.100000000.png'):
        (d / name).write_bytes(b'')
    ld = LabelDir(d, tolerance_ns=10 * MS)
    assert ld.mode == 'stamp'
    assert ld.lookup(T0 + 95 * MS, 0).name == '1700000000.100000000.png'
    assert ld.lookup(T0 + 50 * MS, 0) is None
    (d / 'frame_a.png').write_bytes(b'')
    ld = LabelDir(d)
    assert ld.mode == 'index' and ld.lookup(0, 2).name == 'frame_a.png'
    assert ld.lookup(0, 3) is None


# -- scoring recorded predictions (no model) --------------------------------------------------
def _gt_and_pred(rng, shape=(6, 8)):
    gt = rng.integers(0, 12, shape).astype(np.uint8)      # 11 = void
    pred = np.where(rng.random(shape) < 0.6, np.minimum(gt, 10),
                    rng.integers(0, 11, shape)).astype(np.uint8)
    return gt, pred


def test_pred_topic_scores_match_the_core_metrics_and_count_skips(tmp_path):
    rng = np.random.default_rng(1)
    frames, conf = [], np.zeros((11, 11), np.int64)
    for i in range(4):
        gt, pred = _gt_and_pred(rng)
        s = T0 + i * 100 * MS
        frames += [('/pspnet/mask', s, pred), ('/camera/labels', s + (3 * MS if i == 2 else 0),
                                               gt)]
        conf += confusion_matrix(pred, gt, 11, 11)
    frames.append(('/pspnet/mask', T0 + 900 * MS, pred))             # no label at all
    frames.append(('/camera/labels', T0 + 990 * MS, gt))            # no frame at all
    frames.append(('/pspnet/mask', T0 + 1000 * MS, np.zeros((3, 3), np.uint8)))
    frames.append(('/camera/labels', T0 + 1000 * MS, gt))           # size mismatch
    write_label_bag(tmp_path / 'pred', frames, 'mcap')
    report = run_eval(tmp_path, [tmp_path / 'pred'], pred_topic='/pspnet/mask',
                      label_topic='/camera/labels', stamp_tolerance=0.005)
    expect = scores(conf)
    fr = report['frames']
    assert (fr['read'], fr['scored'], fr['skipped']) == (6, 4, 2)
    assert fr['skipped_by_reason'] == {'no_label': 1, 'size_mismatch': 1}
    assert fr['skip_examples']['size_mismatch'] == 'label 8x6 but frame 3x3'
    assert fr['labels_unmatched'] == 1
    assert report['confusion'] == conf.tolist()
    assert report['metrics']['miou'] == pytest.approx(expect['miou'], abs=1e-12)
    assert report['metrics']['fwiou'] == pytest.approx(expect['fwiou'], abs=1e-12)
    assert exit_code(report) == 0
    out = tmp_path / 'report'
    assert json.loads((out / 'report.json').read_text())['frames']['scored'] == 4
    assert '| size_mismatch | 1 | label 8x6 but frame 3x3 |' in (out / 'summary.md').read_text()
    assert {p.name for p in out.iterdir()} >= {'iou.png', 'confusion.png', 'latency.png',
                                               'samples.png', 'summary.md', 'report.json'}


def test_exact_matching_without_tolerance_skips_the_offset_label(tmp_path):
    rng = np.random.default_rng(2)
    gt, pred = _gt_and_pred(rng)
    write_label_bag(tmp_path / 'b', [('/m', T0, pred), ('/l', T0 + 3 * MS, gt)])
    report = run_eval(tmp_path, [tmp_path / 'b'], pred_topic='/m', label_topic='/l')
    assert report['frames']['skipped_by_reason'] == {'no_label': 1}
    assert report['metrics'] is None


def test_labels_dir_by_index_scores_a_bag_without_label_topic(tmp_path, camvid_bag):
    report = run_eval(tmp_path, [camvid_bag], pred_topic='/camera/labels',
                      labels_dir=str(CAMVID / 'valannot'), limit=2)
    assert report['frames']['scored'] == 2
    assert report['metrics']['miou'] == 1.0 and report['metrics']['pixel_accuracy'] == 1.0
    assert report['ground_truth'].endswith('(by index)')


# -- model replay -----------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_eval_runs_the_model_and_writes_a_prediction_bag(tmp_path, camvid_bag):
    need(DEFAULT_CARD)
    rc = main(['eval', str(camvid_bag), '--image-topic', '/camera/image_raw', '--label-topic',
               '/camera/labels', '--out', str(tmp_path / 'r'), '--write-bag',
               str(tmp_path / 'pred'), '--write-storage', 'mcap', '--limit', '2',
               '--no-progress'])
    assert rc == 0
    report = json.loads((tmp_path / 'r' / 'report.json').read_text())
    assert report['frames']['scored'] == 2 and report['frames']['written_to_bag'] == 2
    assert 0 <= report['metrics']['miou'] <= 1
    for stage in ('decode', 'preprocess', 'inference', 'postprocess', 'total', 'evaluator'):
        lat = report['latency_ms'][stage]
        assert lat['n'] == 2 and lat['p50'] <= lat['p90'] <= lat['p99']
    assert report['model']['name'] == 'pspnet_mobilenetv2_camvid'
    inputs = {m.header.stamp.nanosec: m for tp, _, m in read_all(camvid_bag, ['/camera/labels'])}
    written = read_all(tmp_path / 'pred')
    assert sorted({tp for tp, _, _ in written}) == ['/camera/labels', '/pspnet/color_mask',
                                                    '/pspnet/mask', '/pspnet/occupancy']
    copied = [m for tp, _, m in written if tp == '/camera/labels']
    assert [bytes(m.data) for m in copied] == \
        [bytes(inputs[m.header.stamp.nanosec].data) for m in copied]
    from pspnet_ros.core.occupancy_msg import decode_occupancy
    masks = {m.header.stamp.nanosec: m for tp, _, m in written if tp == '/pspnet/mask'}
    for tp, _, m in written:
        assert m.header == inputs[m.header.stamp.nanosec].header
        if tp == '/pspnet/occupancy':
            mask = masks[m.header.stamp.nanosec]
            ids = np.asarray(mask.data).reshape(mask.height, mask.width)
            whole = decode_occupancy(m.fields, m.height, m.width, m.point_step,
                                     bytes(m.data))[0]
            assert whole.pixels == 480 * 360
            assert list(whole.counts.values()) == np.bincount(ids.reshape(-1),
                                                              minlength=11).tolist()


def test_compressed_images_are_segmented(tmp_path):
    need(CAMVID)
    make_bag(CAMVID / 'val', CAMVID / 'valannot', tmp_path / 'c', compressed=True, limit=1,
             image_topic='/camera/image_raw/compressed', storage='mcap')
    report = run_eval(tmp_path, [tmp_path / 'c'], image_topic='/camera/image_raw/compressed',
                      label_topic='/camera/labels')
    assert report['frames']['scored'] == 1 and report['frames']['skipped'] == 0


# -- bad bags never crash ---------------------------------------------------------------------
@pytest.mark.parametrize('bag', ['test_bag_sqlite3', 'test_bag_mcap'])
@pytest.mark.parametrize('topic, example', [
    ('/test/sensor_msgs/image', 'Image 640x480 rgb8: data has 30 bytes, needs at least 921600'),
    ('/test/sensor_msgs/compressed_image', 'CompressedImage (jpeg, 10 bytes): data is neither '
     'PNG nor JPEG')])
def test_third_party_bags_with_malformed_images_report_each_frame(tmp_path, bag, topic,
                                                                  example):
    report = run_eval(tmp_path, [need(BAGS / bag)], image_topic=topic)
    fr = report['frames']
    assert (fr['read'], fr['processed'], fr['skipped_by_reason']) == (2, 0, {'bad_image': 2})
    assert fr['skip_examples']['bad_image'].startswith(example)
    # No frame decoded: no result, so the run fails (issue 38 item 5; it exited 0 before).
    assert exit_code(report) == 2


def test_missing_topic_lists_the_available_topics(tmp_path, capsys):
    bag = need(BAGS / 'test_bag_mcap')
    rc = main(['eval', str(bag), '--image-topic', '/camera/image_raw', '--out',
               str(tmp_path / 'r'), '--no-progress', '--model', str(DEFAULT_CARD)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "has no image topic '/camera/image_raw'; available topics: " in err
    assert '/test/sensor_msgs/image (sensor_msgs/msg/Image)' in err


def test_truncated_mcap_gives_partial_results(tmp_path):
    rng = np.random.default_rng(3)
    frames = []
    for i in range(8):      # 170 kB messages: rosbags closes an MCAP chunk every 1 MiB
        gt, pred = _gt_and_pred(rng, (360, 480))
        frames += [('/m', T0 + i * MS, pred), ('/l', T0 + i * MS, gt)]
    write_label_bag(tmp_path / 'b', frames, 'mcap')
    mcap = tmp_path / 'b' / 'b.mcap'
    data = mcap.read_bytes()
    mcap.write_bytes(data[:len(data) * 2 // 3])
    report = run_eval(tmp_path, [tmp_path / 'b'], pred_topic='/m', label_topic='/l')
    bag = report['bags'][0]
    assert 'File end magic is invalid' in bag['recovered']
    assert 0 < report['frames']['scored'] < 8
    assert 'reading stopped early' in bag['read_error']
    assert exit_code(report) == 1


def test_truncated_sqlite_and_good_bag_together(tmp_path, capsys):
    rng = np.random.default_rng(4)
    gt, pred = _gt_and_pred(rng)
    write_label_bag(tmp_path / 'good', [('/m', T0, pred), ('/l', T0, gt)])
    shutil.copytree(tmp_path / 'good', tmp_path / 'cut')
    db = tmp_path / 'cut' / 'good.db3'
    db.write_bytes(db.read_bytes()[:6000])
    rc = main(['eval', str(tmp_path / 'cut'), str(tmp_path / 'good'), '--pred-topic', '/m',
               '--label-topic', '/l', '--out', str(tmp_path / 'r'), '--no-progress'])
    err = capsys.readouterr().err
    assert rc == 1
    assert f'error: cannot open bag {tmp_path / "cut"}: ' in err and 'malformed' in err
    report = json.loads((tmp_path / 'r' / 'report.json').read_text())
    assert report['frames']['scored'] == 1


def test_argument_errors_are_explained(capsys):
    assert main(['eval', 'x', '--pred-topic', '/m']) == 2
    assert '--pred-topic needs ground truth' in capsys.readouterr().err


def test_bag_paths_may_be_bare_storage_files(tmp_path):
    rng = np.random.default_rng(5)
    gt, pred = _gt_and_pred(rng)
    write_label_bag(tmp_path / 'b', [('/m', T0, pred), ('/l', T0, gt)])
    report = run_eval(tmp_path, [Path(tmp_path / 'b' / 'b.db3')], pred_topic='/m',
                      label_topic='/l')
    assert report['frames']['scored'] == 1


@pytest.mark.slow
def test_prediction_bag_scores_alone_and_a_failed_run_leaves_no_stale_plots(tmp_path,
                                                                            camvid_bag):
    need(DEFAULT_CARD)
    out = tmp_path / 'r'
    assert main(['eval', str(camvid_bag), '--image-topic', '/camera/image_raw', '--label-topic',
                 '/camera/labels', '--out', str(out), '--write-bag', str(tmp_path / 'pred'),
                 '--limit', '2', '--no-progress']) == 0
    first = json.loads((out / 'report.json').read_text())
    # The model's labels, scored again from the prediction bag alone (docs/EVALUATION.md).
    assert main(['eval', str(tmp_path / 'pred'), '--pred-topic', '/pspnet/mask',
                 '--label-topic', '/camera/labels', '--out', str(out), '--no-progress']) == 0
    second = json.loads((out / 'report.json').read_text())
    assert second['frames']['scored'] == 2
    assert second['metrics']['miou'] == pytest.approx(first['metrics']['miou'], abs=1e-9)
    assert (out / 'iou.png').exists() and 'iou.png' in second['files']
    # A run that reads nothing: the previous run's plots go, the summary lists none.
    assert main(['eval', str(tmp_path / 'missing'), '--pred-topic', '/pspnet/mask',
                 '--label-topic', '/camera/labels', '--out', str(out), '--no-progress']) == 2
    assert sorted(p.name for p in out.iterdir()) == ['report.json', 'summary.md']
    files = json.loads((out / 'report.json').read_text())['files']
    assert files == ['report.json', 'summary.md']
    assert '.png' not in (out / 'summary.md').read_text()
