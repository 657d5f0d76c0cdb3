"""The metrics agree with independent computations: a per-pixel loop and torchmetrics."""
from conftest import CAMVID, DEFAULT_CARD, need
import numpy as np
import pytest

from pspnet_ros.core.image import read_image, read_label
from pspnet_ros.core.labels import CAMVID as CAMVID_SET
from pspnet_ros.core.metrics import confusion_matrix, scores
from pspnet_ros.evaluation.bagio import BagWriter, make_header
from pspnet_ros.evaluation.evaluator import BagEvaluator, EvalConfig

IGNORE = 11
C = 11


def brute_force(pairs, num_classes, ignore):
    """IoU per class (None if the class is in neither), mIoU over GT classes, pixel accuracy,
    FWIoU, counted one pixel at a time in plain Python."""
    tp = [0] * num_classes
    gt_n = [0] * num_classes
    pr_n = [0] * num_classes
    total = correct = 0
    for pred, gt in pairs:
        for p, g in zip(pred.reshape(-1).tolist(), gt.reshape(-1).tolist()):
            if g == ignore or not 0 <= g < num_classes:
                continue
            total += 1
            gt_n[g] += 1
            pr_n[p] += 1
            if p == g:
                tp[g] += 1
                correct += 1
    iou = [tp[c] / (gt_n[c] + pr_n[c] - tp[c]) if gt_n[c] + pr_n[c] else None
           for c in range(num_classes)]
    present = [c for c in range(num_classes) if gt_n[c]]
    return {'iou': iou, 'miou': sum(iou[c] for c in present) / len(present),
            'pixel_accuracy': correct / total,
            'fwiou': sum(gt_n[c] / total * iou[c] for c in present)}


def check_against(ours, ref):
    for a, b in zip(ours['iou'], ref['iou']):
        if b is None:
            assert np.isnan(a)
        else:
            assert a == pytest.approx(b, abs=1e-12)
    for k in ('miou', 'pixel_accuracy', 'fwiou'):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12)


@pytest.mark.parametrize('case', ['random', 'absent_classes', 'constant_prediction'])
def test_scores_equal_a_per_pixel_loop(case):
    rng = np.random.default_rng(7)
    pairs = []
    for _ in range(3):
        gt = rng.integers(0, 12, (7, 9))                     # includes void (11)
        if case == 'absent_classes':
            gt = np.where(gt >= 5, IGNORE, gt)               # classes 5..10 not in GT
            pred = rng.integers(0, 8, (7, 9))                # 5..7 predicted anyway
        elif case == 'constant_prediction':
            pred = np.full((7, 9), 3)                        # "empty": one class everywhere
        else:
            pred = np.where(rng.random((7, 9)) < 0.5, np.minimum(gt, 10),
                            rng.integers(0, C, (7, 9)))
        pairs.append((pred.astype(np.uint8), gt.astype(np.uint8)))
    conf = sum(confusion_matrix(p, g, C, IGNORE) for p, g in pairs)
    check_against(scores(conf), brute_force(pairs, C, IGNORE))


def test_all_void_ground_truth_scores_nothing():
    conf = confusion_matrix(np.zeros((2, 2), np.uint8), np.full((2, 2), IGNORE, np.uint8), C,
                            IGNORE)
    s = scores(conf)
    assert s['pixels'] == 0 and np.isnan(s['miou']) and np.isnan(s['pixel_accuracy'])


@pytest.fixture(scope='module')
def camvid_predictions():
    """Real CamVid val labels with real model predictions (small input size for speed)."""
    need(CAMVID)
    from pspnet_ros.core import Segmenter
    from pspnet_ros.core.data import find_pairs
    seg = Segmenter(need(DEFAULT_CARD), input_size=(97, 129))
    out = []
    for ip, lp in find_pairs(CAMVID / 'val', CAMVID / 'valannot')[::40][:3]:
        out.append((seg(read_image(ip), occupancy=False).labels, read_label(lp)))
    return out


def test_bag_evaluation_equals_torchmetrics_on_camvid(tmp_path, camvid_predictions):
    torch = pytest.importorskip('torch')
    tm = pytest.importorskip('torchmetrics.classification')
    pairs = list(camvid_predictions)
    # An empty (all-void) prediction frame and one whose GT lacks most classes.
    pairs.append((np.zeros_like(pairs[0][1]), pairs[0][1]))
    pairs.append((pairs[1][0], np.where(pairs[1][1] == 3, 3, IGNORE).astype(np.uint8)))
    with BagWriter(tmp_path / 'b', 'sqlite3') as bag:
        for i, (pred, gt) in enumerate(pairs):
            stamp = 1_700_000_000_000_000_000 + i * 50_000_000
            header = make_header(bag.ts, stamp, 'camera')
            bag.write_labels('/pspnet/mask', header, pred, stamp)
            bag.write_labels('/camera/labels', header, gt, stamp)
    cfg = EvalConfig(bags=[str(tmp_path / 'b')], pred_topic='/pspnet/mask',
                     label_topic='/camera/labels', out=str(tmp_path / 'r'), progress=False)
    report = BagEvaluator(cfg, class_names=CAMVID_SET.classes, ignore_index=IGNORE).run()
    assert report['frames']['scored'] == len(pairs)

    jac = tm.MulticlassJaccardIndex(num_classes=C, ignore_index=IGNORE, average=None)
    acc = tm.MulticlassAccuracy(num_classes=C, ignore_index=IGNORE, average='micro')
    for pred, gt in pairs:
        p, g = torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(gt.astype(np.int64))
        jac.update(p, g)
        acc.update(p, g)
    ref_iou = jac.compute().numpy()
    gt_pixels = np.array(list(report['metrics']['gt_pixels'].values()))
    ours = np.array([np.nan if v is None else v for v in report['metrics']['iou'].values()])
    seen = ~np.isnan(ours)
    assert np.allclose(ours[seen], ref_iou[seen], atol=1e-6)
    assert np.all(ref_iou[~seen] == 0)               # torchmetrics' zero_division
    assert report['metrics']['miou'] == pytest.approx(float(ref_iou[gt_pixels > 0].mean()),
                                                      abs=1e-6)
    assert report['metrics']['pixel_accuracy'] == pytest.approx(float(acc.compute()), abs=1e-6)
