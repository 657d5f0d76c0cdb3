"""pspnet-ros export: ONNX / TFLite / int8 Edge-TPU-ready files, each with a model card."""
import importlib.util

from conftest import CORAL, DEFAULT_CARD
import numpy as np
import pytest

from pspnet_ros.cli import main
from pspnet_ros.core import ModelCard
from pspnet_ros.core.export import EDGETPU_FORBIDDEN_OPS, edgetpu_problems, export, ExportError


def _need_modules(*modules):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f'export needs {missing}: pip install -r requirements-export.txt')


def test_int8_export_without_calibration_images_says_what_to_pass(tmp_path):
    with pytest.raises(ExportError, match=r'--format tflite-int8 needs calibration images: '
                                          r'--calib-dir FOLDER'):
        export(DEFAULT_CARD, 'tflite-int8', tmp_path)


def test_unknown_format_is_rejected_by_the_cli(capsys):
    with pytest.raises(SystemExit):
        main(['export', str(DEFAULT_CARD), '--format', 'coreml', '--out', '/tmp/x'])
    assert "invalid choice: 'coreml'" in capsys.readouterr().err


def test_export_refuses_a_card_that_is_not_pytorch(tmp_path):
    card = ModelCard.load(DEFAULT_CARD)
    card.format = 'tflite'
    card.weights = 'model.tflite'
    with pytest.raises(ExportError, match=r'export starts from PyTorch weights; card '
                                          r"pspnet_mobilenetv2_camvid has format 'tflite'"):
        export(card, 'onnx', tmp_path)


def test_edgetpu_check_flags_float_and_int64_io_of_a_labels_model():
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert not installed')
    model = CORAL / 'deeplabv3_mnv2_pascal_quant.tflite'
    if not model.is_file():
        pytest.skip(f'{model} is not present (shared Coral models)')
    problems = edgetpu_problems(model)
    assert any('output' in p and 'int64, not int8/uint8' in p for p in problems)
    assert not any(p.startswith('input') for p in problems)  # uint8 NHWC static input


def test_onnx_export_writes_model_and_card_that_onnxruntime_runs(tmp_path, capsys):
    _need_modules('onnx', 'onnxscript', 'onnxruntime')
    assert main(['export', str(DEFAULT_CARD), '--format', 'onnx', '--out', str(tmp_path)]) == 0
    assert 'onnx: ' in capsys.readouterr().out
    card = ModelCard.load(tmp_path / 'pspnet_mobilenetv2_camvid.onnx.yaml')
    assert (card.name, card.format, card.weights) == (
        'pspnet_mobilenetv2_camvid_onnx', 'onnx', 'pspnet_mobilenetv2_camvid.onnx')
    import onnx
    model = onnx.load(str(card.weights_path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 281, 377]  # static shape at the card's input size
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [1, 11, 36, 48]  # logits at output stride 8
    from pspnet_ros.core.backends import create_backend
    out = create_backend('onnxruntime', card).run(np.zeros((1, 3, 281, 377), np.float32))
    assert out.shape == (1, 11, 36, 48) and out.dtype == np.float32


@pytest.mark.slow
def test_int8_export_is_edgetpu_ready_by_construction(tmp_path, camvid):
    _need_modules('litert_torch', 'ai_edge_litert')
    results = export(DEFAULT_CARD, 'edgetpu', tmp_path, calib_dir=camvid / 'train',
                     calib_count=4)
    int8 = results[0]
    assert int8.model.name == 'pspnet_mobilenetv2_camvid_int8.tflite'
    assert edgetpu_problems(int8.model) == []
    assert not set(int8.ops) & set(EDGETPU_FORBIDDEN_OPS)
    assert set(int8.ops) <= {'CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'MEAN', 'AVERAGE_POOL_2D',
                             'RESIZE_BILINEAR', 'CONCATENATION'}
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(int8.model))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert (inp['dtype'], list(inp['shape'])) == (np.int8, [1, 281, 377, 3])
    assert (out['dtype'], list(out['shape'])) == (np.int8, [1, 36, 48, 11])
    card = ModelCard.load(int8.card)
    assert (card.format, card.input_layout, card.output_layout) == ('tflite_int8', 'NHWC',
                                                                    'NHWC')
    assert 'zero point' in card.notes
    assert any('edgetpu_compiler' in n for n in int8.notes)  # compiled or says it is missing


def test_negative_qat_steps_are_rejected(tmp_path):
    with pytest.raises(ExportError, match='qat steps must be >= 0, got -1'):
        export(DEFAULT_CARD, 'tflite-int8', tmp_path, calib_dir=tmp_path, qat_steps=-1)


@pytest.mark.slow
def test_int8_export_with_quantisation_aware_distillation_stays_edgetpu_ready(tmp_path, camvid):
    _need_modules('litert_torch', 'ai_edge_litert')
    int8, = export(DEFAULT_CARD, 'tflite-int8', tmp_path, calib_dir=camvid / 'train',
                   calib_count=2, qat_steps=2)
    assert edgetpu_problems(int8.model) == []
    assert set(int8.ops) <= {'CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'MEAN', 'AVERAGE_POOL_2D',
                             'RESIZE_BILINEAR', 'CONCATENATION'}
    card = ModelCard.load(int8.card)
    assert '2 steps of quantisation-aware distillation' in card.notes
    assert int8.notes[-1] == 'quantisation-aware distillation: 2 steps, lr 3e-05'
    from pspnet_ros.core import Segmenter
    labels = Segmenter(card, backend='tflite')(np.zeros((90, 120, 3), np.uint8)).labels
    assert labels.shape == (90, 120) and labels.max() < 11
