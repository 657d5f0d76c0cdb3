"""Every available backend against torch on the same real CamVid val frames.

Exported models come from ``$PSPNET_EXPORTED_DIR`` (cards written by ``pspnet-ros export``)
when set, otherwise they are exported here for the formats whose export packages are
installed; the rest are skipped with the reason.
"""
import importlib.util
import os
from pathlib import Path

from conftest import DEFAULT_CARD
import numpy as np
import pytest

from pspnet_ros.core import ModelCard, Segmenter, read_image
from pspnet_ros.core.backends import BackendUnavailable
from pspnet_ros.core.data import find_pairs, split_folders
from pspnet_ros.training.validation import evaluate_pairs

FRAMES = 4
CARD_NAMES = {'onnx': 'pspnet_mobilenetv2_camvid.onnx.yaml',
              'tflite': 'pspnet_mobilenetv2_camvid_float.tflite.yaml',
              'tflite-int8': 'pspnet_mobilenetv2_camvid_int8.tflite.yaml'}
EXPORT_NEEDS = {'onnx': ('onnx', 'onnxscript'), 'tflite': ('litert_torch',),
                'tflite-int8': ('litert_torch',)}


def _missing(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.fixture(scope='module')
def val_pairs(camvid):
    return find_pairs(*split_folders(camvid, 'val'))


@pytest.fixture(scope='module')
def frames(val_pairs):
    picks = np.linspace(0, len(val_pairs) - 1, FRAMES).round().astype(int)
    return [read_image(val_pairs[i][0]) for i in picks]


@pytest.fixture(scope='module')
def torch_segmenter():
    return Segmenter(DEFAULT_CARD)


@pytest.fixture(scope='module')
def exported(tmp_path_factory, camvid):
    """format -> card path, or the reason it is unavailable."""
    given = os.environ.get('PSPNET_EXPORTED_DIR')
    out, cards = tmp_path_factory.mktemp('export'), {}
    for fmt, name in CARD_NAMES.items():
        if given:
            path = Path(given) / name
            cards[fmt] = path if path.is_file() else f'{path} not found ($PSPNET_EXPORTED_DIR)'
            continue
        missing = _missing(EXPORT_NEEDS[fmt])
        if missing:
            cards[fmt] = f'export needs {missing}: run make test-export (its own venv)'
            continue
        from pspnet_ros.export import export
        calib = camvid / 'train' if fmt == 'tflite-int8' else None
        cards[fmt] = export(DEFAULT_CARD, fmt, out, calib_dir=calib, calib_count=16)[0].card
    return cards


def _segmenter(exported, fmt: str, backend: str) -> Segmenter:
    card = exported[fmt]
    if isinstance(card, str):
        pytest.skip(card)
    try:
        return Segmenter(card, backend=backend)
    except BackendUnavailable as exc:
        pytest.skip(f'backend {backend} unavailable: {exc}')


def _compare(reference: Segmenter, other: Segmenter, frames) -> tuple[float, float]:
    """(pixel agreement of the final labels, max |logit difference|) over ``frames``."""
    agree, delta = [], 0.0
    for img in frames:
        x, _ = reference.preprocess(img)
        y, _ = other.preprocess(img)
        a, b = reference.backend.run(x), other.backend.run(y)
        if other.card.output_layout == 'NHWC':
            b = b.transpose(0, 3, 1, 2)
        delta = max(delta, float(np.abs(a - b).max()))
        la = reference(img, occupancy=False).labels
        lb = other(img, occupancy=False).labels
        agree.append(float((la == lb).mean()))
    return float(np.mean(agree)), delta


@pytest.mark.slow
@pytest.mark.parametrize('fmt,backend', [('onnx', 'onnxruntime'), ('tflite', 'tflite')])
def test_float_backend_matches_torch(exported, frames, torch_segmenter, fmt, backend):
    pytest.importorskip({'onnxruntime': 'onnxruntime', 'tflite': 'ai_edge_litert'}[backend],
                        reason=f'{backend} runtime not installed')
    seg = _segmenter(exported, fmt, backend)
    agreement, delta = _compare(torch_segmenter, seg, frames)
    print(f'{backend}: argmax agreement {agreement:.5f}, max |dlogit| {delta:.2e}')
    assert agreement >= 0.999
    assert delta < 1e-2


def test_torch_cuda_fp16_matches_fp32(frames):
    torch = pytest.importorskip('torch')
    if not torch.cuda.is_available():
        pytest.skip('CUDA not available (scripts/gpu_check.sh covers GPUs)')
    ref = Segmenter(DEFAULT_CARD)
    fast = Segmenter(DEFAULT_CARD, device='cuda',
                     backend_options={'fp16': True, 'channels_last': True})
    agreement, delta = _compare(ref, fast, frames)
    assert agreement >= 0.999


@pytest.mark.slow
def test_int8_tflite_agrees_with_torch(exported, frames, torch_segmenter):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    seg = _segmenter(exported, 'tflite-int8', 'tflite')
    agreement, delta = _compare(torch_segmenter, seg, frames)
    print(f'int8: argmax agreement {agreement:.5f}, max |dlogit| {delta:.3f}')
    assert agreement >= 0.98


@pytest.mark.slow
def test_int8_tflite_miou_is_within_1_5_points_of_float(exported, val_pairs, torch_segmenter):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    seg = _segmenter(exported, 'tflite-int8', 'tflite')
    float_miou = evaluate_pairs(torch_segmenter, val_pairs)['miou']
    int8_miou = evaluate_pairs(seg, val_pairs)['miou']
    print(f'CamVid val mIoU: torch fp32 {float_miou:.4f}, tflite int8 {int8_miou:.4f}')
    assert abs(float_miou - int8_miou) <= 0.015


def test_exported_cards_describe_their_files(exported):
    expected = {'onnx': ('onnx', 'NCHW', 'NCHW'), 'tflite': ('tflite', 'NHWC', 'NHWC'),
                'tflite-int8': ('tflite_int8', 'NHWC', 'NHWC')}
    checked = 0
    for fmt, card_path in exported.items():
        if isinstance(card_path, str):
            continue
        card = ModelCard.load(card_path)
        assert (card.format, card.input_layout, card.output_layout) == expected[fmt]
        assert card.weights_path.is_file() and card.output_kind == 'logits'
        checked += 1
    if not checked:
        pytest.skip('no export format available: ' + '; '.join(exported.values()))
