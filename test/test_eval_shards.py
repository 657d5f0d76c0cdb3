"""Bag shards without Ray: time-range planning, merging to the sequential report, per-bag table."""
import json
from pathlib import Path

from conftest import CAMVID, need
import numpy as np
import pytest

from pspnet_ros.cli import main
from pspnet_ros.core.image import read_label
from pspnet_ros.core.labels import CAMVID as CAMVID_SET
from pspnet_ros.core.metrics import confusion_matrix, scores
from pspnet_ros.evaluation.bagio import BagWriter, image_msg, make_header
from eval_helpers import plan
from pspnet_ros.evaluation.evaluator import BagEvaluator, EvalConfig
from pspnet_ros.evaluation.report import build_report, exit_code
from pspnet_ros.evaluation.shards import merge, ShardWorker

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
MS = 1_000_000
# Report fields that depend on the clock, not on the frames.
CLOCK = ('created', 'throughput', 'latency_ms')


def camvid_labels(first: int, n: int) -> list[np.ndarray]:
    files = sorted((need(CAMVID) / 'valannot').glob('*.png'))[first:first + n]
    return [read_label(p) for p in files]


def write_pred_bag(path, labels, period_ns=100 * MS, label_delay_ns=0, storage='sqlite3',
                   no_label=(), bad_label=(), orphans=()):
    """Frame i: /pred = the ground truth of frame i+1, void as class 10 (a plausible,
    imperfect prediction) and
    /camera/labels = its own ground truth, same header stamp T0 + i * period. Labels are
    recorded ``label_delay_ns`` after their frame; ``no_label`` frames have none,
    ``bad_label`` ones an rgb8 label; ``orphans`` are ``(bag time, stamp)`` of labels without a
    frame."""
    n = len(labels) - 1
    with BagWriter(path, storage) as bag:
        msgs = []
        for i in range(n):
            stamp = T0 + i * period_ns
            header = make_header(bag.ts, stamp, 'camera')
            msgs.append((stamp, 'pred', header, np.minimum(labels[i + 1], 10)))
            if i in bad_label:
                h, w = labels[i].shape
                msgs.append((stamp + label_delay_ns, 'rgb8', header,
                             (h, w, 'rgb8', 3 * w, bytes(3 * h * w))))
            elif i not in no_label:
                msgs.append((stamp + label_delay_ns, 'label', header, labels[i]))
        for t, stamp in orphans:
            msgs.append((t, 'label', make_header(bag.ts, stamp, 'camera'), labels[0]))
        for t, kind, header, data in sorted(msgs, key=lambda m: m[0]):
            if kind == 'pred':
                bag.write_labels('/pred', header, data, t)
            elif kind == 'label':
                bag.write_labels('/camera/labels', header, data, t)
            else:
                bag.write('/camera/labels', image_msg(bag.ts, header, data), t)
    return path


def cfg_for(bags, out, **kw):
    return EvalConfig(bags=[str(b) for b in bags], pred_topic='/pred',
                      label_topic='/camera/labels', out=str(out), progress=False, **kw)


def sequential(cfg):
    ev = BagEvaluator(cfg, class_names=CAMVID_SET.classes, palette=CAMVID_SET.palette_array(),
                      ignore_index=CAMVID_SET.ignore_index)
    return ev.run()


def in_process(cfg, shard_frames):
    """The shards a Ray run would make, evaluated here one after another, then merged."""
    shards = plan(cfg, shard_frames)
    worker = ShardWorker(cfg, label_set='camvid')
    results = {s.id: worker.run(s) for s in shards}
    st, bags = merge(cfg, shards, results, {}, len(CAMVID_SET.classes))
    return shards, build_report(cfg, st, bags, 1.0, worker.describe())


def assert_same_report(a: dict, b: dict) -> None:
    """Every field equal except clock-dependent ones; latency from the same number of frames."""
    assert set(a) - {'fleet'} == set(b) - {'fleet'}
    for key in set(a) - set(CLOCK) - {'fleet'}:
        assert a[key] == b[key], key
    for stage, p in a['latency_ms'].items():
        assert (p or {}).get('n') == (b['latency_ms'][stage] or {}).get('n'), stage


@pytest.fixture(scope='module')
def long_bag(tmp_path_factory):
    """12 frames 1 s apart; labels recorded 1.2 s after their frame (so those of frames 3, 7
    and 8 fall in the next shard's range); frame 5 unlabelled, frame 8 with an undecodable label,
    one label without a frame (stamp 7.5 s, recorded at 8.7 s)."""
    return write_pred_bag(tmp_path_factory.mktemp('shards') / 'long', camvid_labels(0, 13),
                          period_ns=S, label_delay_ns=1200 * MS, no_label={5}, bad_label={8},
                          orphans=[(T0 + 8700 * MS, T0 + 7500 * MS)])


def test_long_bag_is_planned_as_contiguous_time_ranges(long_bag, tmp_path):
    small = write_pred_bag(tmp_path / 'small', camvid_labels(20, 3))
    missing = tmp_path / 'missing'
    shards = plan(cfg_for([long_bag, small, missing], tmp_path / 'r', samples=4), 4)
    assert [(s.id, s.bag_index, s.part, s.parts, s.frames, s.samples) for s in shards] == [
        (0, 0, 0, 3, 4, 1), (1, 0, 1, 3, 4, 1), (2, 0, 2, 3, 4, 1), (3, 1, 0, 1, 2, 1),
        (4, 2, 0, 1, 0, 0)]
    first, end = T0, T0 + 11 * S + 1200 * MS + 1    # the last message is frame 11's label
    bounds = [first + (end - first) * i // 3 for i in (1, 2)]
    assert T0 + 3 * S < bounds[0] < T0 + 4200 * MS and T0 + 7 * S < bounds[1] < T0 + 8200 * MS
    assert [(s.start_ns, s.stop_ns) for s in shards[:3]] == [
        (None, bounds[0]), (bounds[0], bounds[1]), (bounds[1], None)]
    assert shards[3].start_ns is None and shards[3].stop_ns is None
    assert len(plan(cfg_for([long_bag], tmp_path / 'r'), 0)) == 1
    assert len(plan(cfg_for([long_bag], tmp_path / 'r', limit=12), 4)) == 1


def test_time_range_shards_merge_to_the_sequential_report(long_bag, tmp_path):
    small = write_pred_bag(tmp_path / 'small', camvid_labels(20, 4), storage='mcap')
    cfg = cfg_for([long_bag, small], tmp_path / 'r')
    seq = sequential(cfg)
    fr = seq['frames']
    assert (fr['read'], fr['scored'], fr['skipped_by_reason']) == (
        15, 13, {'bad_label': 1, 'no_label': 1})
    assert (fr['labels_unmatched'], fr['labels_bad']) == (1, 1)
    shards, merged = in_process(cfg, 4)
    assert len(shards) == 4
    assert_same_report(merged, seq)


def test_per_bag_entries_and_table_sorted_worst_first(long_bag, tmp_path):
    good = write_pred_bag(tmp_path / 'good', camvid_labels(40, 3))
    cfg = cfg_for([good, long_bag, tmp_path / 'missing'], tmp_path / 'r')
    report = sequential(cfg)
    by = {Path(b['path']).name: b for b in report['bags']}
    assert (by['long']['frames_read'], by['long']['frames_scored']) == (12, 10)
    assert (by['good']['frames_read'], by['good']['frames_scored']) == (2, 2)
    assert by['missing']['miou'] is None and by['missing']['error']
    conf = np.zeros((11, 11), np.int64)
    labels = camvid_labels(40, 3)
    for i in range(2):
        conf += confusion_matrix(np.minimum(labels[i + 1], 10), labels[i], 11, 11)
    s = scores(conf)
    assert by['good']['miou'] == s['miou']
    present = [i for i in range(11) if conf[i].sum()]
    worst = sorted(present, key=lambda i: (s['iou'][i], i))[:3]
    expected = [{'class': CAMVID_SET.classes[i], 'iou': s['iou'][i]} for i in worst]
    assert by['good']['worst_classes'] == expected
    md = (tmp_path / 'r' / 'summary.md').read_text()
    table = md.split('## Per bag (worst first)')[1].split('\n## ')[0]
    rows = [ln for ln in table.splitlines() if ln.startswith('| `')]
    order = sorted([b for b in report['bags'] if b['miou'] is not None],
                   key=lambda b: b['miou'])
    assert [r.split('`')[1] for r in rows] == [str(tmp_path / 'missing')] + [
        b['path'] for b in order]
    assert '(error)' in rows[0]
    assert exit_code(report) == 1


def test_workers_without_ray_print_how_to_install_it(tmp_path, monkeypatch, capsys):
    from pspnet_ros.evaluation import fleet
    monkeypatch.setattr(fleet, 'ray_available', lambda: False)
    bag = write_pred_bag(tmp_path / 'b', camvid_labels(0, 2))
    code = main(['eval', str(bag), '--pred-topic', '/pred', '--label-topic', '/camera/labels',
                 '--out', str(tmp_path / 'r'), '--workers', '2', '--label-set', 'camvid'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith('error: --workers 2 runs on Ray')
    assert "pip install '.[ray]'" in err[0]
    assert not (tmp_path / 'r').exists()


@pytest.mark.parametrize('argv, message', [
    (['--workers', '0'], '--workers must be >= 1, got 0'),
    (['--gpus-per-worker', '1'], '--gpus-per-worker is for workers on Ray'),
])
def test_bad_parallel_options_are_one_error_line(tmp_path, capsys, argv, message):
    bag = write_pred_bag(tmp_path / 'b', camvid_labels(0, 2))
    code = main(['eval', str(bag), '--pred-topic', '/pred', '--label-topic', '/camera/labels',
                 '--out', str(tmp_path / 'r'), '--label-set', 'camvid', *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_report_json_has_per_bag_fields(long_bag, tmp_path):
    cfg = cfg_for([long_bag], tmp_path / 'r')
    sequential(cfg)
    data = json.loads((tmp_path / 'r' / 'report.json').read_text())
    assert set(data['bags'][0]) == {'path', 'storage', 'error', 'recovered', 'read_error',
                                    'frames_read', 'frames_scored', 'miou', 'worst_classes'}
