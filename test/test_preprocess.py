"""One preprocessing: the Segmenter, training (teacher inputs, batches) and int8 calibration
give bit-identical tensors for the same frame (core/preprocess.py)."""
import cv2
import numpy as np
import pytest
import torch

from conftest import DEFAULT_CARD
from pspnet_ros.core import ModelCard, Segmenter
from pspnet_ros.core.preprocess import mirror_merge_scores, normalise, prepare
from pspnet_ros.export.tflite import calibration_frames
from pspnet_ros.training.config import TrainConfig
from pspnet_ros.training.data import augment, batches
from pspnet_ros.training.teacher import frame_input


def _frame():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (120, 170, 3)).astype(np.uint8)


def test_segmenter_training_and_calibration_give_identical_tensors(tmp_path):
    img = _frame()
    cv2.imwrite(str(tmp_path / 'f.png'), img[:, :, ::-1])      # PNG: lossless, BGR on disk
    card = ModelCard.load(DEFAULT_CARD)
    seg = Segmenter(card)
    runtime, valid = seg.preprocess(img)
    teacher = frame_input(img, card.input_size, card.mean, card.std)
    calib = calibration_frames(card, tmp_path, 1, nhwc=True)[0]
    calib_nchw = calibration_frames(card, tmp_path, 1, nhwc=False)[0]
    assert runtime.shape == (1, 3, 369, 465) and runtime.dtype == np.float32
    assert valid == (0, 0, 369, 465)
    assert np.array_equal(runtime, teacher)
    assert np.array_equal(runtime, calib_nchw)
    assert np.array_equal(runtime.transpose(0, 2, 3, 1), calib)
    # Training batches normalise their crops with the same function: a crop of the whole
    # frame with no rescale, flip or jitter equals normalise() of the frame.
    x = normalise(img, card.mean, card.std)
    want = (img.astype(np.float32) - np.float32(127.5)) * (np.float32(1) / np.float32(127.5))
    assert np.array_equal(x, want)


def test_batches_are_normalised_by_the_shared_function():
    img = _frame()
    lab = np.zeros(img.shape[:2], np.uint8)
    cfg = TrainConfig(train_images='a', train_labels='b', out='c', batch_size=1,
                      input_size=[120, 170], crop_size=[120, 170], scale_range=[1.0, 1.0])
    rng = np.random.default_rng(0)
    x, _, _ = next(batches([(img, lab)], np.arange(1), cfg, rng, 255, np.float32(cfg.mean)))
    # Replay the same draws to get the augmented uint8-range crop, then normalise it.
    im, _ = augment(img, lab, np.random.default_rng(0), 1.0, (1.0, 1.0), (120, 170), 255,
                    np.float32(cfg.mean))
    want = normalise(im, cfg.mean, cfg.std).transpose(2, 0, 1).copy()
    assert torch.equal(x[0], torch.from_numpy(want))


def test_letterbox_keeps_aspect_and_pads_with_the_mean():
    img = np.full((100, 200, 3), 255, np.uint8)
    x, valid = prepare(img, (100, 100), [127.5] * 3, [127.5] * 3, 'letterbox', 'NHWC')
    assert valid == (25, 0, 50, 100)
    assert x.shape == (1, 100, 100, 3)
    # Padding is the mean clipped to uint8 (127), a little below zero once normalised.
    assert np.allclose(x[0, :25], (127 - 127.5) / 127.5)
    assert np.allclose(x[0, 25:75], 1.0)
    u8, _ = prepare(img, (100, 100), [127.5] * 3, [127.5] * 3, 'letterbox', 'NHWC', 'uint8')
    assert u8.dtype == np.uint8 and u8[0, 0, 0, 0] == 127 and u8[0, 50, 50, 0] == 255
    with pytest.raises(ValueError, match="resize_mode must be stretch or letterbox, got 'x'"):
        prepare(img, (100, 100), [0] * 3, [1] * 3, 'x')


def test_mirror_merge_is_the_log_of_the_mean_distribution():
    a = np.array([[[0.0, 2.0]], [[1.0, 0.0]]], np.float32)       # C=2, H=1, W=2
    b = np.array([[[3.0, 0.0]], [[0.0, 0.0]]], np.float32)       # mirrored output
    got = mirror_merge_scores(a, b, 0, -1).softmax(0).numpy()
    pa = torch.from_numpy(a).softmax(0).numpy()
    pb = torch.from_numpy(b[:, :, ::-1].copy()).softmax(0).numpy()
    np.testing.assert_allclose(got, (pa + pb) / 2, rtol=1e-6)


@pytest.mark.parametrize('mode', ['stretch', 'letterbox'])
def test_a_quantised_input_is_looked_up_with_the_values_of_normalise_and_quantise(mode):
    pytest.importorskip('ai_edge_litert')
    from pspnet_ros.core.backends.tflite_backend import quantize
    card = ModelCard.load(DEFAULT_CARD.with_name('pspnet_mobilenetv2_camvid_int8.tflite.yaml'))
    seg = Segmenter(card, backend='tflite', resize_mode=mode)
    scale, zero_point = seg.backend._in['quantization']
    table = seg.backend.input_table()
    assert table.shape == (256, 3) and table.dtype == np.int8
    # mean 127.5, std 127.5, scale 1/128: pixel 0 -> -1.0 -> clipped to -128, 255 -> +1.0
    assert table[0].tolist() == [-128] * 3
    assert table[255].tolist() == [int(np.round(1 / scale)) + zero_point] * 3
    for img in (_frame(), np.full((50, 400, 3), 255, np.uint8), np.zeros((300, 20, 3), np.uint8)):
        looked_up, valid = seg.preprocess(img)
        floats, want_valid = prepare(img, seg.input_size, card.mean, card.std, mode,
                                     card.input_layout, 'float32')
        assert valid == want_valid
        assert looked_up.dtype == np.int8 and looked_up.shape == floats.shape
        assert np.array_equal(looked_up, quantize(floats, scale, zero_point, np.int8))


def test_float_inputs_have_no_table():
    seg = Segmenter(DEFAULT_CARD, backend='torch')
    assert seg.backend.input_table() is None
    assert seg.preprocess(_frame())[0].dtype == np.float32
