"""Scores -> labels at frame size in row bands: same labels as one whole-frame interpolation,
bounded memory."""
import subprocess
import sys

from conftest import CAMVID, DEFAULT_CARD
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pspnet_ros.core import Segmenter, upsample
from pspnet_ros.core.upsample import labels_at


def _reference(scores: torch.Tensor, shape) -> tuple[np.ndarray, np.ndarray]:
    """What the Segmenter computed before bands: one F.interpolate of the whole frame."""
    hwc = F.interpolate(scores, shape, mode='bilinear', align_corners=True).permute(0, 2, 3, 1)[0]
    top, lab = hwc.max(dim=-1)
    return lab.numpy().astype(np.uint8), (1.0 / torch.exp(hwc - top[..., None]).sum(-1)).numpy()


def _scores(c=11, h=71, w=95, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)


def test_small_frames_are_made_whole_and_equal_the_reference_exactly():
    scores = _scores()
    for shape in ((360, 480), (720, 960)):
        labels, conf = labels_at(scores, shape, True)
        ref_labels, ref_conf = _reference(scores, shape)
        assert np.array_equal(labels, ref_labels) and np.array_equal(conf, ref_conf)
        assert np.array_equal(labels_at(scores, shape, False)[0], ref_labels)


@pytest.mark.parametrize('shape', [(1, 37), (37, 1), (71, 95), (200, 301), (97, 1000)])
def test_bands_agree_with_the_reference_to_float_rounding(monkeypatch, shape):
    monkeypatch.setattr(upsample, 'WHOLE_BYTES', 0)          # bands even for small frames
    monkeypatch.setattr(upsample, 'BAND_BYTES', 7 * 11 * 4 * shape[1])   # 7 rows a band
    scores = _scores(seed=shape[0])
    labels, conf = labels_at(scores, shape, True)
    ref_labels, ref_conf = _reference(scores, shape)
    np.testing.assert_allclose(conf, ref_conf, rtol=0, atol=2e-6)
    # Labels may differ only where the two best classes tie to float rounding.
    up = F.interpolate(scores, shape, mode='bilinear', align_corners=True)[0]
    top2 = up.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-5).numpy()
    assert np.array_equal(labels[clear], ref_labels[clear])
    assert np.array_equal(labels_at(scores, shape, False)[0], labels)


@pytest.mark.slow
def test_a_4k_camvid_frame_gives_the_labels_of_the_whole_frame_interpolation():
    frames = sorted((CAMVID / 'val').glob('*.png'))
    if not frames:
        pytest.skip('CamVid val frames are not present (/work/shared/data/camvid)')
    seg = Segmenter(DEFAULT_CARD, backend='torch')
    rgb = cv2.resize(cv2.imread(str(frames[0]))[:, :, ::-1], (3840, 2160))
    x, valid = seg.preprocess(rgb)
    scores = torch.from_numpy(seg.backend.run(x)).contiguous(memory_format=torch.channels_last)
    labels, conf = seg.postprocess(seg.backend.run(x)[0], rgb.shape[:2], valid, True)
    ref_labels, ref_conf = _reference(scores, rgb.shape[:2])
    assert (labels != ref_labels).sum() <= 4          # of 8.3 million; measured 0 on this frame
    np.testing.assert_allclose(conf, ref_conf, rtol=0, atol=2e-6)


def test_a_4096_square_frame_needs_no_frame_sized_float_scores():
    # 11 classes at 4096x4096: the whole-frame interpolation alone held 740 MB (1.5 GB with
    # confidence); bands keep the peak near the labels and confidence (84 MB) plus ~50 MB.
    code = '\n'.join([
        'import resource, torch',
        'from pspnet_ros.core.upsample import labels_at',
        'torch.set_num_threads(1)',
        'scores = torch.randn(1, 11, 71, 95).contiguous(memory_format=torch.channels_last)',
        'labels_at(scores, (600, 800), True)',
        'before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss',
        'labels, conf = labels_at(scores, (4096, 4096), True)',
        'after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss',
        'print((after - before) // 1024, labels.shape, conf.dtype)'])
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split(maxsplit=1)
    assert out[1].strip() == '(4096, 4096) float32'
    assert int(out[0]) < 200, f'peak grew by {out[0]} MB'


def test_labels_only_interpolate_only_the_cells_whose_corners_disagree(monkeypatch):
    # A 3x3 grid: class 0 in the top-left 2x2 block (one cell whose corners all agree), class
    # 1 elsewhere; only pixels of the three mixed cells may be interpolated.
    scores = torch.zeros(1, 2, 3, 3)
    scores[0, 0, :2, :2] = 1.0
    scores[0, 1] = 1.0 - scores[0, 0]
    labels, conf = labels_at(scores.contiguous(memory_format=torch.channels_last), (9, 9), False)
    ref, _ = _reference(scores, (9, 9))
    assert conf is None and np.array_equal(labels, ref)
    assert (labels[:5, :5] == 0).all()                   # the agreeing cell: class 0 throughout
    monkeypatch.setattr(upsample, 'MIXED_CHUNK', 4)      # chunked mixed pixels: same labels
    assert np.array_equal(labels_at(scores, (9, 9), False)[0], ref)


@pytest.mark.parametrize('backend', ['torch', 'tflite'])
def test_labels_only_equal_the_whole_frame_interpolation_on_camvid(backend):
    frames = sorted((CAMVID / 'val').glob('*.png'))[:8]
    if not frames:
        pytest.skip('CamVid val frames are not present (/work/shared/data/camvid)')
    card = DEFAULT_CARD
    if backend == 'tflite':
        pytest.importorskip('ai_edge_litert')
        card = DEFAULT_CARD.with_name('pspnet_mobilenetv2_camvid_int8.tflite.yaml')
    seg = Segmenter(card, backend=backend)
    mixed = []
    for path in frames:
        rgb = cv2.imread(str(path))[:, :, ::-1]
        x, valid = seg.preprocess(rgb)
        out = np.asarray(seg.backend.run(x)[0], np.float32)
        scores = torch.from_numpy(out[None])
        if seg.card.output_layout == 'NHWC':
            scores = scores.permute(0, 3, 1, 2)
        scores = scores.contiguous(memory_format=torch.channels_last)
        for shape in (rgb.shape[:2], (720, 960)):
            labels, _ = labels_at(scores, shape, False)
            # Labels may differ only where the two best classes tie to float rounding (int8
            # logits tie exactly at times: 1 pixel of these 6.9 million, 2026-12-07).
            up = F.interpolate(scores, shape, mode='bilinear', align_corners=True)[0]
            top2 = up.topk(2, dim=0).values
            clear = (top2[0] - top2[1] > 1e-4).numpy()
            ref = _reference(scores, shape)[0]
            assert np.array_equal(labels[clear], ref[clear])
            assert (labels != ref).sum() <= 4
        best = scores[0].argmax(0)
        agree = ((best[:-1, :-1] == best[1:, :-1]) & (best[:-1, :-1] == best[:-1, 1:])
                 & (best[:-1, :-1] == best[1:, 1:]))
        mixed.append(1 - agree.float().mean().item())
    assert max(mixed) < upsample.MIXED_CELLS_MAX      # the shorter way was the one taken
