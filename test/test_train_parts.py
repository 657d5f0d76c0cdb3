"""Pieces of ``pspnet-ros train`` with exact expected values: class weights and distillation."""
import math

import numpy as np
import pytest
import torch

from conftest import DEFAULT_CARD
from pspnet_ros.core.train import TrainConfig, class_weights, distill_loss, load_teacher


def test_median_frequency_weights_follow_segnet():
    # class 0: 6 pixels, class 1: 3, class 2: 1; 255 is void and not counted.
    lab = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 255, 255]], np.uint8)
    w = class_weights([lab], 3, 255, 'median').numpy()
    np.testing.assert_allclose(w, [0.5, 1.0, 3.0], rtol=1e-6)     # median freq 0.3 / freq
    ws = class_weights([lab], 3, 255, 'sqrt-median').numpy()
    np.testing.assert_allclose(ws, np.sqrt([0.5, 1.0, 3.0]), rtol=1e-6)
    assert class_weights([lab], 3, 255, 'none') is None


def test_distillation_loss_is_the_kl_to_the_teacher_over_labelled_pixels():
    student = torch.zeros(1, 2, 1, 2)                       # uniform: p = (0.5, 0.5)
    teacher = torch.tensor([[[[math.log(3.0), 0.0]], [[0.0, 0.0]]]])   # (0.75, 0.25), uniform
    labels = torch.tensor([[[0, 255]]])                     # the second pixel is void
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert distill_loss(student, teacher, labels, 255, 1.0).item() == pytest.approx(kl, 1e-6)
    assert distill_loss(teacher, teacher, labels, 255, 1.0).item() == pytest.approx(0, abs=1e-7)
    # Temperature 2 softens both and scales by T^2.
    soft = torch.softmax(teacher[0, :, 0, 0] / 2, 0)
    kl2 = float((soft * (soft.log() - math.log(0.5))).sum()) * 4
    assert distill_loss(student, teacher, labels, 255, 2.0).item() == pytest.approx(kl2, 1e-5)
    # A teacher at another grid is resized to the student's; all-void batches give 0.
    assert distill_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, 2),
                        torch.zeros(1, 3, 3, dtype=torch.long), 255, 1.0).item() == 0.0
    assert distill_loss(student, teacher, torch.full((1, 1, 2), 255), 255, 1.0).item() == 0.0


def test_distillation_options_are_checked():
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', distill_weight=1.0)
    with pytest.raises(ValueError, match='needs --teacher CARD'):
        cfg.validate()
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', teacher=str(DEFAULT_CARD),
                      mean=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match='mean/std .* differ'):
        load_teacher(cfg, 11, torch.device('cpu'))
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', teacher=str(DEFAULT_CARD),
                      label_set='cityscapes')
    with pytest.raises(ValueError, match="11 classes of 'camvid', the student has 19"):
        load_teacher(cfg, 19, torch.device('cpu'))
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', teacher=str(DEFAULT_CARD))
    teacher = load_teacher(cfg, 11, torch.device('cpu'))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
