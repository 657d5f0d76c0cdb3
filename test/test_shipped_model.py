"""The default model ships with its ONNX and int8 TFLite exports, and they match its weights.

``backend: auto`` on the CPU then runs the fastest of them that the installed runtimes allow.
"""
import sys

from conftest import DEFAULT_CARD, ROOT
import numpy as np
import pytest
import yaml

from pspnet_ros.core import ModelCard, Segmenter, read_image
from pspnet_ros.core.data import find_pairs, split_folders
from safetensors import safe_open

MODELS = DEFAULT_CARD.parent
ONNX_CARD = MODELS / 'pspnet_mobilenetv2_camvid.onnx.yaml'
INT8_CARD = MODELS / 'pspnet_mobilenetv2_camvid_int8.tflite.yaml'
FRAMES = 8


@pytest.fixture(scope='module')
def frames(camvid):
    pairs = find_pairs(*split_folders(camvid, 'val'))
    picks = np.linspace(0, len(pairs) - 1, FRAMES).round().astype(int)
    return [read_image(pairs[i][0]) for i in picks]


@pytest.fixture(scope='module')
def torch_labels(frames):
    seg = Segmenter(DEFAULT_CARD, backend='torch')
    return [seg(img, occupancy=False).labels for img in frames]


def _agreement(card_path, backend: str, frames, torch_labels) -> float:
    seg = Segmenter(card_path, backend=backend)
    return float(np.mean([(seg(img, occupancy=False).labels == ref).mean()
                          for img, ref in zip(frames, torch_labels)]))


def test_exports_are_shipped_with_cards_that_match_the_default_card():
    default = ModelCard.load(DEFAULT_CARD)
    for path, fmt, layout in ((ONNX_CARD, 'onnx', 'NCHW'), (INT8_CARD, 'tflite_int8', 'NHWC')):
        card = ModelCard.load(path)
        assert card.format == fmt and card.input_layout == layout
        assert card.weights_path.is_file()
        assert 0.5e6 < card.weights_path.stat().st_size < 20e6
        for key in ('label_set', 'num_classes', 'input_size', 'mean', 'std', 'resize_mode',
                    'architecture', 'head_channels', 'output_stride', 'decoder_channels',
                    'decoder_stride'):
            assert getattr(card, key) == getattr(default, key), key
        assert card.name == path.name[:-len('.yaml')].replace('.onnx', '_onnx').replace(
            '.tflite', '')
        # Re-running the recipes must not overwrite the shipped files.
        assert card.reproduce == default.reproduce
        assert card.metrics['val']['images'] == 101
        assert card.metrics['val']['measured_with'].endswith(
            '(onnxruntime, cpu)' if fmt == 'onnx' else '(tflite, cpu)')
    assert default.reproduce.startswith('pspnet-ros train --config recipes/')
    outs = [yaml.safe_load((ROOT / step.split()[-1]).read_text())['out']
            for step in default.reproduce.split(' && ')]
    assert outs[-1] == 'train_out' and all(o.startswith('train_out') for o in outs)
    # The shipped weights are the ones the card's numbers describe (a saved copy, not a stub).
    with safe_open(str(ModelCard.load(DEFAULT_CARD).weights_path), 'np') as f:
        assert f.metadata()['architecture'] == 'pspnet_mobilenetv2'
        assert len(list(f.keys())) > 250


def test_shipped_onnx_export_gives_the_weights_masks(frames, torch_labels):
    pytest.importorskip('onnxruntime', reason='onnxruntime not installed')
    agreement = _agreement(ONNX_CARD, 'onnxruntime', frames, torch_labels)
    print(f'onnx argmax agreement with torch: {agreement:.5f}')
    assert agreement >= 0.999


def test_shipped_int8_export_gives_the_weights_masks(frames, torch_labels):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    agreement = _agreement(INT8_CARD, 'tflite', frames, torch_labels)
    print(f'int8 argmax agreement with torch: {agreement:.5f}')
    assert agreement >= 0.98


def test_auto_on_cpu_runs_the_shipped_int8_model_when_litert_is_installed(
        frames, torch_labels):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    seg = Segmenter(DEFAULT_CARD, backend='auto', backend_options={'num_threads': 2})
    assert seg.backend.name == 'tflite' and seg.backend.details['num_threads'] == 2
    assert seg.card.name == 'pspnet_mobilenetv2_camvid_int8'
    assert seg.card.input_layout == 'NHWC'           # pre-processing follows the int8 card
    assert [n for n, _ in seg.backend.fallbacks] == ['edgetpu']
    assert seg.backend.selection.startswith('tflite on cpu (runtime=ai-edge-litert')
    assert 'skipped edgetpu: no edgetpu export of pspnet_mobilenetv2_camvid' in (
        seg.backend.selection)
    agree = np.mean([(seg(img, occupancy=False).labels == ref).mean()
                     for img, ref in zip(frames, torch_labels)])
    assert agree >= 0.98


def test_auto_on_cpu_without_litert_runs_the_shipped_onnx_model(monkeypatch):
    pytest.importorskip('onnxruntime', reason='onnxruntime not installed')
    # None in sys.modules makes `import` raise ImportError: as if the package were absent.
    monkeypatch.setitem(sys.modules, 'ai_edge_litert', None)
    monkeypatch.setitem(sys.modules, 'tflite_runtime', None)
    seg = Segmenter(DEFAULT_CARD, backend='auto')
    assert seg.backend.name == 'onnxruntime'
    assert seg.card.name == 'pspnet_mobilenetv2_camvid_onnx'
    reasons = dict(seg.backend.fallbacks)
    assert list(reasons) == ['edgetpu', 'tflite']
    assert 'pip install ai-edge-litert' in reasons['tflite']


def test_auto_on_cpu_without_either_runtime_runs_torch(monkeypatch):
    for module in ('ai_edge_litert', 'tflite_runtime', 'onnxruntime'):
        monkeypatch.setitem(sys.modules, module, None)
    seg = Segmenter(DEFAULT_CARD, backend='auto', backend_options={'channels_last': True})
    assert seg.backend.name == 'torch' and seg.backend.details['channels_last'] is True
    assert seg.card.name == 'pspnet_mobilenetv2_camvid'
    assert [n for n, _ in seg.backend.fallbacks] == ['edgetpu', 'tflite', 'onnxruntime']


def test_setup_installs_every_shipped_model_file(monkeypatch):
    import setuptools
    captured = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kw: captured.update(kw))
    monkeypatch.chdir(MODELS.parent)
    source = (MODELS.parent / 'setup.py').read_text()
    exec(compile(source, 'setup.py', 'exec'), {'__name__': 'setup_under_test'})
    installed = dict(captured['data_files'])['share/pspnet_ros/models']
    shipped = sorted(f'models/{p.name}' for p in MODELS.iterdir() if p.is_file())
    assert sorted(installed) == shipped
    assert {'models/pspnet_mobilenetv2_camvid.onnx',
            'models/pspnet_mobilenetv2_camvid_int8.tflite'} <= set(installed)
