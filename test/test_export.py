"""pspnet-ros export: ONNX / TFLite / int8 Edge-TPU-ready files, each with a model card."""
import importlib.util

from conftest import CORAL, DEFAULT_CARD
import numpy as np
import pytest

from pspnet_ros.cli import main
from pspnet_ros.core import ModelCard
from pspnet_ros.export import EDGETPU_FORBIDDEN_OPS, edgetpu_problems, export, ExportError


# Every op an int8 PSPNet export may hold: all map to the Edge TPU.
PSPNET_INT8_OPS = {'CONV_2D', 'DEPTHWISE_CONV_2D', 'ADD', 'MEAN', 'AVERAGE_POOL_2D',
                   'RESIZE_BILINEAR', 'CONCATENATION'}


def _need_modules(*modules):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f'export needs {missing}: run make test-export (its own venv)')


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


@pytest.mark.slow
def test_onnx_export_writes_model_and_card_that_onnxruntime_runs(tmp_path, capsys):
    _need_modules('onnx', 'onnxscript', 'onnxruntime')
    assert main(['export', str(DEFAULT_CARD), '--format', 'onnx', '--out', str(tmp_path)]) == 0
    assert 'onnx: ' in capsys.readouterr().out
    card = ModelCard.load(tmp_path / 'pspnet_mobilenetv2_camvid.onnx.yaml')
    assert (card.name, card.format, card.weights) == (
        'pspnet_mobilenetv2_camvid_onnx', 'onnx', 'pspnet_mobilenetv2_camvid.onnx')
    import onnx
    model = onnx.load(str(card.weights_path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['batch', 3, 369, 465]  # dynamic batch axis, static card input size
    out_dims = [d.dim_param or d.dim_value
                for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == ['batch', 11, 93, 117]  # logits at stride 4 (the default model's decoder)
    from pspnet_ros.core.backends import create_backend
    backend = create_backend('onnxruntime', card)
    out = backend.run(np.zeros((1, 3, 369, 465), np.float32))
    assert out.shape == (1, 11, 93, 117) and out.dtype == np.float32
    # One run of three different frames equals three runs of one.
    x = np.random.default_rng(3).normal(size=(3, 3, 369, 465)).astype(np.float32)
    batched = backend.run(x)
    assert batched.shape == (3, 11, 93, 117)
    for i in range(3):
        np.testing.assert_allclose(batched[i:i + 1], backend.run(x[i:i + 1]), atol=1e-4)
    torch_out = create_backend('torch', ModelCard.load(DEFAULT_CARD)).run(x)
    np.testing.assert_allclose(batched, torch_out, atol=1e-3 * np.abs(torch_out).max())


@pytest.mark.slow
def test_int8_export_is_edgetpu_ready_by_construction(tmp_path, camvid):
    _need_modules('litert_torch', 'ai_edge_litert')
    results = export(DEFAULT_CARD, 'edgetpu', tmp_path, calib_dir=camvid / 'train',
                     calib_count=4)
    int8 = results[0]
    assert int8.model.name == 'pspnet_mobilenetv2_camvid_int8.tflite'
    assert edgetpu_problems(int8.model) == []
    assert not set(int8.ops) & set(EDGETPU_FORBIDDEN_OPS)
    assert set(int8.ops) <= PSPNET_INT8_OPS
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(int8.model))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert (inp['dtype'], list(inp['shape'])) == (np.int8, [1, 369, 465, 3])
    assert (out['dtype'], list(out['shape'])) == (np.int8, [1, 93, 117, 11])
    card = ModelCard.load(int8.card)
    assert (card.format, card.input_layout, card.output_layout) == ('tflite_int8', 'NHWC',
                                                                    'NHWC')
    assert 'zero point' in card.notes
    assert 'bias correction of weight rounding, 4 calibration frames' in card.notes
    assert any('edgetpu_compiler' in n for n in int8.notes)  # compiled or says it is missing


@pytest.mark.slow
def test_a_stride_4_decoder_exports_to_int8_edgetpu_ops_at_stride_4(tmp_path, camvid):
    # The layout a card describes (decoder_stride 4) is what the exporters build; its extra
    # ops (a 24-channel skip, ADDs, one more RESIZE_BILINEAR) stay within the Edge TPU's set.
    # Input 48k-7 (185x233: a 24x30 grid at stride 8) so the pyramid's bins divide the grid.
    _need_modules('litert_torch', 'ai_edge_litert')
    import torch
    from pspnet_ros.core.model import PSPNet
    from pspnet_ros.core.weights import save_safetensors
    torch.manual_seed(0)
    net = PSPNet('pspnet_mobilenetv2', 11, head_channels=16, aux=False, decoder_channels=8,
                 decoder_stride=4).eval()
    save_safetensors(net, tmp_path / 'dec4.safetensors')
    card = ModelCard(name='dec4', weights='dec4.safetensors', label_set='camvid',
                     num_classes=11, input_size=[185, 233], head_channels=16,
                     decoder_channels=8, decoder_stride=4)
    card.save(tmp_path / 'dec4.yaml')
    int8 = export(tmp_path / 'dec4.yaml', 'edgetpu', tmp_path / 'out',
                  calib_dir=camvid / 'train', calib_count=2)[0]
    assert edgetpu_problems(int8.model) == []
    assert set(int8.ops) <= PSPNET_INT8_OPS
    from ai_edge_litert.interpreter import Interpreter
    out = Interpreter(model_path=str(int8.model)).get_output_details()[0]
    assert list(out['shape']) == [1, 47, 59, 11]              # ceil(185/4), ceil(233/4)
    assert ModelCard.load(int8.card).decoder_stride == 4


def _conv_relu6_net(seed: int):
    """Conv -> ReLU6 -> depthwise 3x3 -> 1x1, with BatchNorm-like spread in the weights."""
    import torch
    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.pw = torch.nn.Conv2d(8, 4, 1)
            self.relu6 = torch.nn.ReLU6(inplace=True)        # as in MobileNetV2
            with torch.no_grad():
                self.conv.weight.mul_(4)     # pre-activations reach far beyond [0, 6]

        def forward_logits(self, x):
            return self.pw(self.dw(self.relu6(self.conv(x))))

        forward = forward_logits
    return Net().eval()


def test_relu6_output_gets_its_own_int8_range():
    """The stock litert-torch quantizer shares a ReLU6's range with the convolution before it;
    ``_int8_quantizer`` fuses them, so the ReLU6 output is quantised over [0, 6]."""
    _need_modules('litert_torch', 'torchao')
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e
    from pspnet_ros.export.tflite import _int8_quantizer
    net = _conv_relu6_net(0)
    x = torch.randn(1, 3, 16, 16)
    exported = torch.export.export(net, (x,), strict=True).module()
    prepared = quantize_pt2e.prepare_pt2e(exported, _int8_quantizer(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)))
    with torch.no_grad():
        prepared(x)
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    nodes = list(converted.graph.nodes)
    relu6 = next(n for n in nodes if 'hardtanh' in str(n.target))
    conv = relu6.args[0]
    assert 'conv2d' in str(conv.target)                # no quantize/dequantize in between
    quant, = [u for u in relu6.users if 'quantize_per_tensor' in str(u.target)]
    scale, zero_point = float(quant.args[1]), int(quant.args[2])
    assert scale == pytest.approx(6 / 255, rel=1e-3)  # [0, 6] over 256 levels
    assert zero_point == -128


def test_bias_correction_cancels_the_mean_shift_of_weight_rounding():
    _need_modules('litert_torch', 'torchao')
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from pspnet_ros.export.tflite import _correct_rounding_bias
    qspec = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True).weight
    net = _conv_relu6_net(1)
    frames = [np.random.default_rng(i).normal(size=(1, 16, 16, 3)).astype(np.float32)
              for i in range(3)]
    corrected = _conv_relu6_net(1)
    _correct_rounding_bias(corrected, frames, qspec)
    assert torch.equal(corrected.conv.weight, net.conv.weight)   # weights untouched
    assert corrected.dw.bias is not None                          # a bias where there was none

    def rounded(conv):
        scale = conv.weight.abs().amax(dim=(1, 2, 3)) / 127
        return torch.fake_quantize_per_channel_affine(
            conv.weight, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)

    x = torch.from_numpy(np.concatenate(frames)).permute(0, 3, 1, 2)
    with torch.no_grad():
        h = net.relu6(net.conv(x))
        for conv, fixed in ((net.dw, corrected.dw), (net.pw, corrected.pw)):
            exact = conv(h)
            plain = torch.nn.functional.conv2d(h, rounded(conv), conv.bias,
                                               padding=conv.padding, groups=conv.groups)
            fixed_out = torch.nn.functional.conv2d(h, rounded(conv), fixed.bias,
                                                   padding=conv.padding, groups=conv.groups)
            shift = (plain - exact).mean(dim=(0, 2, 3)).abs().max()
            left = (fixed_out - exact).mean(dim=(0, 2, 3)).abs().max()
            assert shift > 1e-4                       # rounding does move the means
            assert left < shift / 5                   # the correction removes most of it
            h = exact
