"""Label sets and metrics against hand-computed values."""
import numpy as np
import pytest

from pspnet_ros.core.labels import ADE20K, CAMVID, CITYSCAPES, VOC, get_label_set
from pspnet_ros.core.metrics import confusion_matrix, scores


def test_label_sets_have_expected_sizes_and_distinct_colours():
    assert [s.num_classes for s in (CAMVID, CITYSCAPES, ADE20K, VOC)] == [11, 19, 150, 21]
    for s in (CAMVID, CITYSCAPES, ADE20K, VOC):
        assert len(set(s.palette)) == s.num_classes
        assert len(set(s.classes)) == s.num_classes


def test_known_names_and_colours():
    assert CAMVID.classes[3] == 'road' and CAMVID.palette[3] == (128, 64, 128)
    assert CAMVID.ignore_index == 11
    assert CITYSCAPES.classes[0] == 'road' and CITYSCAPES.classes[18] == 'bicycle'
    assert VOC.palette[1] == (128, 0, 0) and VOC.palette[15] == (192, 128, 128)
    assert ADE20K.classes[0] == 'wall' and ADE20K.classes[149] == 'flag'
    with pytest.raises(ValueError, match='unknown label set'):
        get_label_set('kitti')


def test_metrics_match_hand_counts_with_ignore_and_absent_classes():
    gt = np.array([[0, 0, 1, 1], [2, 2, 9, 9]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 0]])
    conf = confusion_matrix(pred, gt, 4, ignore_index=9)
    assert conf.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    s = scores(conf)
    # IoU0 = 1/(2+2-1)=1/3, IoU1 = 2/(2+3-2)=2/3, IoU2 = 1/(2+1-1)=1/2, class 3 absent: NaN
    assert s['iou'][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(s['iou'][3])
    assert s['miou'] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s['pixel_accuracy'] == pytest.approx(4 / 6)
    assert s['fwiou'] == pytest.approx(2 / 6 * 1 / 3 + 2 / 6 * 2 / 3 + 2 / 6 * 1 / 2)


def test_class_predicted_but_absent_in_ground_truth_has_zero_iou_not_in_mean():
    conf = confusion_matrix(np.array([1, 1]), np.array([0, 0]), 2)
    s = scores(conf)
    assert s['iou'] == [0.0, 0.0] and s['miou'] == 0.0


def test_prediction_ids_outside_label_set_raise():
    with pytest.raises(ValueError, match='predicted class ids'):
        confusion_matrix(np.array([5]), np.array([0]), 3)
