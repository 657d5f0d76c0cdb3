"""Backend selection: names, clear errors for missing runtimes, the auto fallback chain."""
import logging
import sys

from conftest import DEFAULT_CARD, modules_loaded_by
import numpy as np
import pytest
import torch

from pspnet_ros.core import ModelCard, Segmenter
from pspnet_ros.core.backends import BackendError, BackendUnavailable, create_backend
from pspnet_ros.core.backends.onnxruntime_backend import resolve_providers
from pspnet_ros.core.backends.tflite_backend import dequantize, quantize


@pytest.fixture(scope='module')
def card() -> ModelCard:
    return ModelCard.load(DEFAULT_CARD)


@pytest.fixture
def bare_card(tmp_path) -> ModelCard:
    """The default card and weights in a folder of their own: no shipped exports beside it."""
    (tmp_path / DEFAULT_CARD.name).write_text(DEFAULT_CARD.read_text())
    weights = DEFAULT_CARD.with_suffix('.safetensors')
    (tmp_path / weights.name).symlink_to(weights)
    return ModelCard.load(tmp_path / DEFAULT_CARD.name)


def test_unknown_backend_name_lists_the_available_ones(card):
    with pytest.raises(BackendError, match=r"unknown backend 'tpu'; available: torch, "
                                           r'onnxruntime, tflite, edgetpu, auto'):
        create_backend('tpu', card)


def test_importing_the_backends_does_not_import_optional_runtimes():
    assert modules_loaded_by('import pspnet_ros.core.backends, pspnet_ros.core.segmenter',
                             ('onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'onnx',
                              'litert_torch')) == []


def _card_for_file(tmp_path, card, fmt: str, name: str) -> ModelCard:
    """``card`` pointing at a placeholder file ``name`` of format ``fmt``."""
    model = tmp_path / name
    model.write_bytes(b'x')
    return ModelCard(**{**card.__dict__, 'format': fmt, 'weights': str(model)})


def test_onnxruntime_backend_asks_for_an_exported_model(card):
    with pytest.raises(BackendError, match=r"format 'safetensors'.*pspnet-ros export CARD "
                                           r'--format onnx'):
        create_backend('onnxruntime', card)


@pytest.mark.parametrize('fmt, modules, backends, message', [
    ('onnx', ('onnxruntime',), ('onnxruntime',),
     r'needs the onnxruntime package.*pip install onnxruntime'),
    ('tflite', ('ai_edge_litert', 'tflite_runtime'), ('tflite', 'edgetpu'),
     r'pip install ai-edge-litert')])
def test_a_missing_runtime_names_the_pip_command(tmp_path, card, monkeypatch, fmt, modules,
                                                 backends, message):
    model_card = _card_for_file(tmp_path, card, fmt, f'm.{fmt}')
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    for name in backends:
        with pytest.raises(BackendUnavailable, match=message):
            create_backend(name, model_card)


@pytest.mark.parametrize('error', [OSError('libedgetpu.so.1: cannot open shared object file'),
                                   ValueError('Failed to load delegate from libedgetpu.so.1')])
def test_edgetpu_delegate_failure_is_unavailable_with_apt_hint(tmp_path, card, monkeypatch,
                                                               error):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    from ai_edge_litert import interpreter

    def fail(library, options=None):
        raise error
    monkeypatch.setattr(interpreter, 'load_delegate', fail)
    tpu_card = _card_for_file(tmp_path, card, 'edgetpu', 'm_edgetpu.tflite')
    with pytest.raises(BackendUnavailable, match=r'Edge TPU delegate libedgetpu.so.1 could not '
                                                 r'be loaded.*apt-get install libedgetpu1-std'):
        create_backend('edgetpu', tpu_card, device='usb:0')


def test_edgetpu_rejects_a_malformed_device_selector(tmp_path, card):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    tpu_card = _card_for_file(tmp_path, card, 'edgetpu', 'm_edgetpu.tflite')
    with pytest.raises(BackendError, match=r"usb, usb:N, pci or pci:N, got 'gpu:0'"):
        create_backend('edgetpu', tpu_card, device='gpu:0')


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='CUDA is available here')
def test_torch_cuda_without_a_gpu_is_unavailable_with_a_hint(card):
    with pytest.raises(BackendUnavailable, match=r'torch.cuda.is_available\(\) is False.*'
                                                 r'device: cpu'):
        create_backend('torch', card, device='cuda')


@pytest.fixture
def backend_log(caplog, monkeypatch):
    """caplog for the backends' logger, also under ``colcon test``.

    There the launch_testing plugin imports ``launch``, whose logger class makes new loggers
    non-propagating, so the root handler caplog relies on would see nothing.
    """
    monkeypatch.setattr(logging.getLogger('pspnet_ros.backends'), 'propagate', True)
    caplog.set_level(logging.WARNING, logger='pspnet_ros.backends')
    return caplog


def test_torch_gpu_options_on_cpu_warn_and_run_fp32(card, backend_log):
    caplog = backend_log
    backend = create_backend('torch', card, fp16=True, channels_last=True, cuda_graphs=True)
    assert 'fp16 needs CUDA' in caplog.text and 'cuda_graphs needs CUDA' in caplog.text
    assert backend.details == {'precision': 'fp32', 'channels_last': True, 'fuse_bn': True}
    out = backend.run(np.zeros((1, 3, 65, 65), np.float32))
    # the default model's logits are at stride 4 (its skip decoder): (65 - 1) / 4 + 1
    assert out.dtype == np.float32 and out.shape == (1, 11, 17, 17)


def test_torch_channels_last_gives_the_same_logits(card):
    x = np.random.default_rng(0).normal(size=(1, 3, 97, 129)).astype(np.float32)
    a = create_backend('torch', card).run(x)
    b = create_backend('torch', card, channels_last=True).run(x)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_torch_folded_batchnorm_gives_the_same_logits_and_labels(card):
    # The default folds BatchNorm into the convolutions; the unfolded model is the reference.
    x = np.random.default_rng(1).normal(size=(2, 3, 97, 129)).astype(np.float32)
    ref = create_backend('torch', card, fuse_bn=False)
    fused = create_backend('torch', card)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.model.modules()) == 0
    # 56 in the backbone and head, 3 in the default model's skip decoder
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.model.modules()) == 59
    a, b = ref.run(x), fused.run(x)
    np.testing.assert_allclose(a, b, atol=2e-5 * np.abs(a).max())
    assert (a.argmax(1) == b.argmax(1)).all()


def test_auto_takes_the_first_loadable_backend_and_records_why_others_failed(
        bare_card, backend_log):
    caplog = backend_log
    seg = Segmenter(bare_card, backend='auto',
                    backend_options={'chain': 'edgetpu,onnxruntime,torch'})
    backend = seg.backend
    assert backend.name == 'torch'
    assert [name for name, _ in backend.fallbacks] == ['edgetpu', 'onnxruntime']
    assert [reason.split(' (')[0] for _, reason in backend.fallbacks] == [
        'no edgetpu export of pspnet_mobilenetv2_camvid next to its card',
        'no onnxruntime export of pspnet_mobilenetv2_camvid next to its card']
    assert 'pspnet-ros export CARD --format onnx' in backend.fallbacks[1][1]
    assert 'backend auto: using torch on cpu' in caplog.text
    assert 'edgetpu unavailable' in caplog.text and 'onnxruntime unavailable' in caplog.text
    assert backend.selection.startswith('torch on cpu (precision=fp32, channels_last=True, '
                                        'fuse_bn=True); '
                                        'skipped edgetpu: ')


def test_auto_passes_per_backend_and_shared_options(card):
    backend = create_backend('auto', card, chain=['torch'], torch={'channels_last': True},
                             num_threads=1)
    assert backend.details['channels_last'] is True and backend.fallbacks == []


def test_auto_with_nothing_loadable_says_why_for_each(bare_card):
    with pytest.raises(BackendUnavailable, match=r'no backend of the auto chain could load: '
                                                 r'onnxruntime: .*; tflite: '):
        create_backend('auto', bare_card, chain='onnxruntime,tflite')


def test_auto_rejects_unknown_chain_members(card):
    with pytest.raises(BackendError, match=r"unknown backend 'gpu' in auto chain"):
        create_backend('auto', card, chain='gpu,torch')


def test_provider_order_is_kept_and_missing_ones_are_listed():
    chosen, missing = resolve_providers(
        ['tensorrt', 'cuda', 'openvino', 'cpu'],
        ['CPUExecutionProvider', 'CUDAExecutionProvider'])
    assert chosen == ['CUDAExecutionProvider', 'CPUExecutionProvider']
    assert missing == ['TensorrtExecutionProvider', 'OpenVINOExecutionProvider']


def test_quantize_rounds_clips_and_dequantize_inverts():
    x = np.array([-2.0, -0.01, 0.0, 0.26, 10.0], np.float32)
    q = quantize(x, 0.05, -3, np.int8)
    np.testing.assert_array_equal(q, [-43, -3, -3, 2, 127])
    np.testing.assert_allclose(dequantize(q, 0.05, -3), [-2.0, 0.0, 0.0, 0.25, 6.5], atol=1e-6)


def test_a_tflite_replica_has_its_own_interpreter_and_threads_and_the_same_outputs(card):
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    int8 = ModelCard.load(DEFAULT_CARD.parent / 'pspnet_mobilenetv2_camvid_int8.tflite.yaml')
    backend = create_backend('tflite', int8, num_threads=2)
    twin = backend.replica(1)
    assert twin.interpreter is not backend.interpreter
    assert (backend.details['num_threads'], twin.details['num_threads']) == (2, 1)
    batch = np.random.default_rng(0).integers(-128, 128, backend.input_shape, np.int8)
    assert np.array_equal(twin.run(batch), backend.run(batch))
    # torch on the CPU is shared by the workers, not copied
    assert create_backend('torch', card).replica(1) is None
