"""Export a model card's PSPNet to ONNX, TFLite float, TFLite int8 and Edge TPU, with cards."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from .backends.base import Backend
from .card import ModelCard

FORMATS = ('onnx', 'tflite', 'tflite-int8', 'edgetpu')
EXPORT_REQUIREMENTS = ('pip install -r requirements-export.txt, or use the .venv-export that '
                       '`make test-export` creates (docs/BACKENDS.md)')
# Ops the Edge TPU compiler cannot map (or that split the graph) in a conv segmentation net.
EDGETPU_FORBIDDEN_OPS = ('GATHER', 'GATHER_ND', 'TRANSPOSE', 'PADV2', 'DEQUANTIZE', 'QUANTIZE',
                         'CAST')
# TensorType values of the TFLite schema, used by modify_model_interface.
_TFLITE_INT8 = 9


class ExportError(RuntimeError):
    """An export failed or its result does not meet the target's constraints."""


class ExportDependencyMissing(ExportError):
    """An export-only package is not installed."""


@dataclass
class ExportResult:
    """What one export produced."""

    format: str
    model: Path
    card: Path
    ops: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _NoBackend(Backend):
    """Lets a ``Segmenter`` preprocess calibration frames without loading a runtime."""

    name = 'none'

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Logits:
    """Factory for the exported module: ``forward_logits``, optionally NHWC in and out."""

    @staticmethod
    def wrap(model, nhwc: bool):
        import torch

        class LogitsModule(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.forward_logits(x)

        module = LogitsModule(model).eval()
        if nhwc:
            litert_torch = _need('litert_torch', 'TFLite export')
            module = litert_torch.to_channel_last_io(module, args=[0], outputs=[0]).eval()
        return module


def _need(module: str, what: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportDependencyMissing(f'{what} needs the Python package {module.split(".")[0]} '
                                      f'({exc}); install the export extras: '
                                      f'{EXPORT_REQUIREMENTS}') from exc


def _progress(text: str) -> None:
    """One progress line on stderr (exports take minutes; say what is happening)."""
    print(f'export: {text}', file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet(what: str):
    """Hold back what converters print (TensorFlow/XLA C++ logs, warnings) on fd 1 and 2;
    show its tail only if ``what`` fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not ok:
                log.seek(0)
                tail = log.read()[-6000:].decode(errors='replace').strip()
                if tail:
                    print(f'{what} failed; what it printed:\n{tail}', file=sys.stderr)


def calibration_frames(card: ModelCard, calib_dir: str | os.PathLike, count: int,
                       nhwc: bool = True) -> list[np.ndarray]:
    """``count`` real frames from ``calib_dir`` (evenly spread, sorted by name), preprocessed
    exactly as the ``Segmenter`` does for ``card``."""
    from .data import IMAGE_EXTS
    from .image import read_image
    from .segmenter import Segmenter
    folder = Path(calib_dir)
    if not folder.is_dir():
        raise ExportError(f'calibration folder not found: {folder}')
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ExportError(f'no images in calibration folder {folder}')
    if count < 1:
        raise ExportError(f'calibration count must be >= 1, got {count}')
    picks = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    nchw_card = dataclasses.replace(card, input_layout='NCHW', input_dtype='float32')
    seg = Segmenter(nchw_card, backend=_NoBackend(nchw_card))
    frames = []
    for i in picks:
        x, _ = seg.preprocess(read_image(files[i]))
        frames.append(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x)
    return frames


def tflite_ops(path: str | os.PathLike) -> list[str]:
    """Operator names of a ``.tflite`` file (via the LiteRT interpreter)."""
    from .backends.tflite_backend import import_interpreter, op_names
    Interpreter = import_interpreter()[0]
    interpreter = Interpreter(model_path=str(path))
    return op_names(interpreter)


def edgetpu_problems(path: str | os.PathLike) -> list[str]:
    """Why a ``.tflite`` file is not Edge TPU ready (empty when it is): int8/uint8 NHWC static
    input and output, no ops from ``EDGETPU_FORBIDDEN_OPS``."""
    from .backends.tflite_backend import import_interpreter, op_names
    Interpreter = import_interpreter()[0]
    interpreter = Interpreter(model_path=str(path))
    problems = []
    for kind, details in (('input', interpreter.get_input_details()),
                          ('output', interpreter.get_output_details())):
        for d in details:
            if np.dtype(d['dtype']) not in (np.int8, np.uint8):
                problems.append(f'{kind} {d["name"]} is {np.dtype(d["dtype"])}, not int8/uint8')
            if len(d['shape']) != 4:
                problems.append(f'{kind} {d["name"]} has shape {list(d["shape"])}, not 4-D NHWC')
            if any(int(v) < 0 for v in d.get('shape_signature', d['shape'])):
                problems.append(f'{kind} {d["name"]} has a dynamic shape '
                                f'{list(d["shape_signature"])}')
    bad = sorted({op for op in op_names(interpreter) if op in EDGETPU_FORBIDDEN_OPS})
    if bad:
        problems.append(f'graph has ops the Edge TPU cannot map: {bad}')
    return problems


def _load_torch_model(card: ModelCard):
    from .backends.torch_backend import build_model
    return build_model(card)


def _out_stem(card: ModelCard, suffix: str) -> str:
    return f'{card.name}{suffix}'


def _write_card(card: ModelCard, model_path: Path, **changes) -> Path:
    """Write ``<model file>.yaml`` (e.g. ``x_int8.tflite.yaml``) describing ``model_path``."""
    name = model_path.stem if model_path.suffix != '.onnx' else f'{model_path.stem}_onnx'
    out = dataclasses.replace(card, name=name, weights=model_path.name, **changes)
    card_path = model_path.with_name(model_path.name + '.yaml')
    out.save(card_path)
    return card_path


def export_onnx(card: ModelCard, out_dir: Path) -> ExportResult:
    """ONNX through the dynamo exporter: ``forward_logits`` at the card's input size, with a
    dynamic batch axis (named ``batch``) so one session runs any number of frames at once."""
    torch = _need('torch', 'ONNX export')
    _need('onnx', 'ONNX export')
    _need('onnxscript', 'ONNX export (dynamo exporter)')
    h, w = card.input_size
    module = _Logits.wrap(_load_torch_model(card), nhwc=False)
    path = out_dir / f'{_out_stem(card, "")}.onnx'
    # Traced with a batch of 2: a batch of 1 would let the exporter specialise the axis.
    x = torch.zeros(2, 3, h, w)
    batch = torch.export.Dim('batch', min=1)
    _progress('exporting to ONNX (torch.onnx dynamo exporter)...')
    with _quiet('ONNX export'):
        program = torch.onnx.export(module, (x,), dynamo=True, input_names=['image'],
                                    output_names=['logits'], dynamic_shapes=({0: batch},),
                                    optimize=True, verbose=False)
        program.save(str(path))
    card_path = _write_card(card, path, format='onnx', input_dtype='float32',
                            input_layout='NCHW', output_kind='logits', output_layout='NCHW',
                            notes=_append(card.notes, f'ONNX export of {card.name} '
                                          f'(forward_logits, Nx3x{h}x{w}, dynamic batch N).'))
    return ExportResult('onnx', path, card_path)


def _append(notes: str, text: str) -> str:
    return f'{notes} {text}'.strip() if notes else text


def _convert_tflite(module, sample, quant_config=None) -> bytes:
    litert_torch = _need('litert_torch', 'TFLite export')
    _progress('converting to TFLite with litert-torch (the slow step: minutes on 2 cores)...')
    with _quiet('litert-torch conversion'), tempfile.TemporaryDirectory() as tmp:
        edge = litert_torch.convert(module, (sample,), quant_config=quant_config)
        path = Path(tmp) / 'model.tflite'
        edge.export(str(path))
        return path.read_bytes()


def export_tflite(card: ModelCard, out_dir: Path) -> ExportResult:
    """TFLite float32 with NHWC input and output."""
    torch = _need('torch', 'TFLite export')
    h, w = card.input_size
    module = _Logits.wrap(_load_torch_model(card), nhwc=True)
    path = out_dir / f'{_out_stem(card, "_float")}.tflite'
    path.write_bytes(_convert_tflite(module, torch.zeros(1, h, w, 3)))
    card_path = _write_card(card, path, format='tflite', input_dtype='float32',
                            input_layout='NHWC', output_kind='logits', output_layout='NHWC',
                            notes=_append(card.notes, f'TFLite float32 export of {card.name}.'))
    return ExportResult('tflite', path, card_path, ops=tflite_ops(path))


def _correct_rounding_bias(net, frames: list[np.ndarray], weight_qspec) -> None:
    """Empirical bias correction (Nagel et al., "Data-Free Quantization Through Weight
    Equalization and Bias Correction", ICCV 2019), in place on the BatchNorm-folded ``net``.

    Rounding a convolution's weights to int8 moves the mean of each output channel by
    ``sum((W_q - W) * E[x])``; in a 3x3 depthwise layer nine rounding errors do not average
    out, and the shift travels through the rest of the network. ``E[x]``, the mean of each
    input channel, is measured on ``frames`` (NHWC, as calibrated); ``W_q`` uses the same
    observer as the quantiser (``weight_qspec``), so the bias the int8 graph carries cancels
    the shift. The float model is untouched: only the copy being quantised changes.
    Measured on the default model (20 CamVid val frames): int8 argmax agreement with float
    98.46 % -> 99.30 % (docs/BENCHMARKS.md).
    """
    import torch
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    sums, calls, hooks = {}, {}, []

    def record(conv, args):
        sums[conv] = sums.get(conv, 0) + args[0].double().mean(dim=(0, 2, 3))
        calls[conv] = calls.get(conv, 0) + 1

    for conv in convs:
        hooks.append(conv.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            for f in frames:
                net.forward_logits(torch.from_numpy(f).permute(0, 3, 1, 2))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for conv in convs:
            if conv not in sums:
                continue
            observer = weight_qspec.observer_or_fake_quant_ctr(
                dtype=weight_qspec.dtype, quant_min=weight_qspec.quant_min,
                quant_max=weight_qspec.quant_max, qscheme=weight_qspec.qscheme,
                ch_axis=weight_qspec.ch_axis)
            w = conv.weight.detach()
            observer(w)
            scale, zero_point = observer.calculate_qparams()
            w_q = torch.fake_quantize_per_channel_affine(
                w, scale.float(), zero_point.int(), 0, weight_qspec.quant_min,
                weight_qspec.quant_max)
            error = (w_q - w).double().sum(dim=(2, 3))               # out, in/groups
            groups = conv.groups
            mean_in = (sums[conv] / calls[conv]).view(groups, -1)    # groups, in/groups
            shift = torch.einsum('goi,gi->go', error.view(groups, -1, error.shape[1]),
                                 mean_in).reshape(-1)
            if conv.bias is None:
                conv.bias = torch.nn.Parameter(torch.zeros_like(shift, dtype=w.dtype))
            conv.bias -= shift.to(conv.bias.dtype)


def _int8_quantizer(config):
    """litert-torch's PT2E quantizer for ``config``, plus convolution + ReLU6 fusion.

    The stock quantizer fuses convolution + ReLU but treats ReLU6 (``nn.ReLU6`` exports as
    ``hardtanh(0, 6)``) as an op that shares its input's quantisation: the convolution's
    whole output range (about -17..17 in the default model's first layer) becomes the ReLU6
    output's range, so the [0, 6] it emits gets ~45 of the 256 int8 levels. Here the
    convolution's output stays unquantised and the ReLU6 output gets its own observer, as
    TFLite's fused ``CONV_2D`` + ``RELU6`` computes it (the converter fuses the pair either
    way, so the op list is unchanged). Measured on the default model, 20 CamVid val frames,
    post-training: int8 argmax agreement with float 97.33 % -> 98.46 % (docs/BENCHMARKS.md).
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize import pt2e_quantizer_utils as qutils
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    convs = (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default)
    hardtanh = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
    relu6 = (torch.ops.aten.relu6.default, torch.ops.aten.relu6_.default)

    def annotate_conv_relu6(gm, qconfig, filter_fn=None):
        for act in gm.graph.nodes:
            if act.op != 'call_function' or act.target not in hardtanh + relu6:
                continue
            if (act.target in hardtanh
                    and tuple(float(v) for v in act.args[1:3]) != (0.0, 6.0)):
                continue
            conv = act.args[0]
            if (getattr(conv, 'op', None) != 'call_function' or conv.target not in convs
                    or len(conv.users) != 1):
                continue
            weight = conv.args[1]
            bias = conv.args[2] if len(conv.args) > 2 else None
            nodes = [act, conv, weight] + ([bias] if bias is not None else [])
            if qutils._is_annotated(nodes) or (filter_fn and not all(map(filter_fn, nodes))):
                continue
            inputs = {conv.args[0]: qutils.get_input_act_qspec(qconfig),
                      weight: qutils.get_weight_qspec(qconfig)}
            if bias is not None:
                inputs[bias] = qutils.get_bias_qspec(qconfig)
            conv.meta['quantization_annotation'] = QuantizationAnnotation(
                input_qspec_map=inputs, _annotated=True)
            act.meta['quantization_annotation'] = QuantizationAnnotation(
                output_qspec=qutils.get_output_act_qspec(qconfig), _annotated=True)
            qutils._mark_nodes_as_annotated(nodes)

    # Hooks into litert-torch 0.10's annotation pass (pinned in requirements-export.txt);
    # test_export.py checks the resulting ReLU6 scale, so an upgrade that moves it fails there.
    class Quantizer(pt2e_quantizer.PT2EQuantizer):
        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            if quantization_config is not None:
                annotate_conv_relu6(model, quantization_config, filter_fn)
            return super()._annotate_all_static_patterns(model, quantization_config,
                                                         filter_fn)

    return Quantizer().set_global(config)


def _set_int8_interface(src: Path, dst: Path) -> None:
    """Replace the float input/output (with QUANTIZE/DEQUANTIZE at the edges) by int8."""
    wrapper = _need('ai_edge_litert._pywrap_modify_model_interface',
                    'int8 input/output for TFLite export')
    status = wrapper.modify_model_interface(str(src), str(dst), _TFLITE_INT8, _TFLITE_INT8)
    if status != 0 or not dst.is_file():
        raise ExportError(f'could not give {src.name} int8 input/output (status {status}); '
                          'the quantised graph must start with QUANTIZE and end with DEQUANTIZE')


def export_tflite_int8(card: ModelCard, out_dir: Path, calib_dir: str | os.PathLike,
                       calib_count: int = 32, bias_correction: bool = True) -> ExportResult:
    """Full-integer int8 TFLite (PT2E, per-channel weights) calibrated on real frames, with
    int8 NHWC input and output, checked to be Edge TPU ready. ReLU6 outputs get their own
    range (``_int8_quantizer``); ``bias_correction`` cancels the mean shift weight rounding
    causes (``_correct_rounding_bias``)."""
    torch = _need('torch', 'TFLite int8 export')
    _need('litert_torch', 'TFLite int8 export')
    from litert_torch.quantize import pt2e_quantizer, quant_config
    quantize_pt2e = _need('torchao.quantization.pt2e.quantize_pt2e', 'TFLite int8 export')
    from .model import fuse_conv_bn
    _progress(f'reading {calib_count} calibration frames from {calib_dir}...')
    frames = calibration_frames(card, calib_dir, calib_count, nhwc=True)
    sample = torch.from_numpy(frames[0])
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True,
                                                              is_dynamic=False)
    net = fuse_conv_bn(_load_torch_model(card))
    if bias_correction:
        _progress('correcting the bias of weight rounding...')
        _correct_rounding_bias(net, frames, config.weight)
    module = _Logits.wrap(net, nhwc=True)
    _progress(f'quantising to int8 (PT2E), calibrating on {len(frames)} frames...')
    with _quiet('int8 quantisation'):
        # strict export keeps source_fn_stack, which the quantizer needs to annotate residual
        # adds
        exported = torch.export.export(module, (sample,), strict=True).module()
        quantizer = _int8_quantizer(config)
        prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for f in frames:
                prepared(torch.from_numpy(f))
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    method = 'bias correction of weight rounding, ' if bias_correction else ''
    blob = _convert_tflite(converted, sample,
                           quant_config.QuantConfig(pt2e_quantizer=quantizer))
    path = out_dir / f'{_out_stem(card, "_int8")}.tflite'
    with tempfile.TemporaryDirectory() as tmp:
        float_io = Path(tmp) / 'float_io.tflite'
        float_io.write_bytes(blob)
        _set_int8_interface(float_io, path)
    problems = edgetpu_problems(path)
    if problems:
        raise ExportError(f'{path} is not Edge TPU ready: ' + '; '.join(problems))
    in_q, out_q = _io_quantization(path)
    card_path = _write_card(
        card, path, format='tflite_int8', input_dtype='float32', input_layout='NHWC',
        output_kind='logits', output_layout='NHWC',
        notes=_append(card.notes,
                      f'Full-integer int8 TFLite export of {card.name} (PT2E, per-channel '
                      f'weights, {method}{len(frames)} calibration frames from '
                      f'{Path(calib_dir).name}). '
                      f'Model input int8 NHWC scale {in_q[0]:.6g} zero point {in_q[1]}, output '
                      f'int8 NHWC scale {out_q[0]:.6g} zero point {out_q[1]}; the tflite/'
                      'edgetpu backends quantise the normalised float input and de-quantise '
                      'the logits.'))
    notes = [f'calibrated on {len(frames)} frames from {calib_dir}']
    if not bias_correction:
        notes.append('bias correction off')
    return ExportResult('tflite-int8', path, card_path, ops=tflite_ops(path), notes=notes)


def _io_quantization(path: Path) -> tuple[tuple[float, int], tuple[float, int]]:
    from .backends.tflite_backend import import_interpreter
    interpreter = import_interpreter()[0](model_path=str(path))
    i = interpreter.get_input_details()[0]['quantization']
    o = interpreter.get_output_details()[0]['quantization']
    return (float(i[0]), int(i[1])), (float(o[0]), int(o[1]))


def run_edgetpu_compiler(model: Path, out_dir: Path) -> tuple[Path | None, str]:
    """Compile with ``edgetpu_compiler`` when it is on PATH: ``(compiled path, report)``."""
    exe = shutil.which('edgetpu_compiler')
    if exe is None:
        return None, ('edgetpu_compiler not found on PATH (it is x86-64 Linux only: '
                      'https://coral.ai/docs/edgetpu/compiler); the int8 model is Edge TPU '
                      f'ready; compile it there with: edgetpu_compiler -s -o DIR {model.name}')
    proc = subprocess.run([exe, '-s', '-o', str(out_dir), str(model)], capture_output=True,
                          text=True, timeout=600)
    report = (proc.stdout + proc.stderr).strip()
    compiled = out_dir / f'{model.stem}_edgetpu.tflite'
    if proc.returncode != 0 or not compiled.is_file():
        raise ExportError(f'edgetpu_compiler failed on {model} (exit {proc.returncode}):\n'
                          f'{report}')
    return compiled, report


def export_edgetpu(card: ModelCard, out_dir: Path, calib_dir: str | os.PathLike,
                   calib_count: int = 32, bias_correction: bool = True) -> list[ExportResult]:
    """The int8 export plus ``edgetpu_compiler`` when available."""
    int8 = export_tflite_int8(card, out_dir, calib_dir, calib_count, bias_correction)
    compiled, report = run_edgetpu_compiler(int8.model, out_dir)
    int8.notes.append(report)
    results = [int8]
    if compiled is not None:
        int8_card = ModelCard.load(int8.card)
        card_path = _write_card(int8_card, compiled, format='edgetpu',
                                notes=_append(int8_card.notes, 'Compiled with edgetpu_compiler.'))
        mapped = [line.strip() for line in report.splitlines() if 'Mapped to Edge TPU' in line
                  or 'Operator' in line or 'Number of operations' in line]
        results.append(ExportResult('edgetpu', compiled, card_path, notes=mapped or [report]))
    return results


def export(card: ModelCard | str | os.PathLike, fmt: str, out_dir: str | os.PathLike,
           calib_dir: str | os.PathLike | None = None, calib_count: int = 32,
           bias_correction: bool = True) -> list[ExportResult]:
    """Export ``card``'s model as ``fmt`` (one of ``FORMATS``) into ``out_dir``; each file gets
    a model card of the same stem so ``Segmenter(card, backend=...)`` runs it. ``bias_correction``
    (int8 formats) cancels the mean shift of weight rounding."""
    card = card if isinstance(card, ModelCard) else ModelCard.load(card)
    if fmt not in FORMATS:
        raise ExportError(f'unknown export format {fmt!r}; choose one of {", ".join(FORMATS)}')
    if card.format != 'safetensors' and not str(card.weights).endswith(('.pth', '.pt')):
        raise ExportError(f'export starts from PyTorch weights; card {card.name} has format '
                          f'{card.format!r}')
    if fmt in ('tflite-int8', 'edgetpu') and calib_dir is None:
        raise ExportError(f'--format {fmt} needs calibration images: --calib-dir FOLDER '
                          '(e.g. ../shared/data/camvid/train)')
    # Missing export packages are reported before anything is written.
    for module in (('onnx', 'onnxscript') if fmt == 'onnx' else ('litert_torch',)):
        _need(module, f'--format {fmt}')
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == 'onnx':
            return [export_onnx(card, out)]
        if fmt == 'tflite':
            return [export_tflite(card, out)]
        if fmt == 'tflite-int8':
            return [export_tflite_int8(card, out, calib_dir, calib_count,
                                       bias_correction=bias_correction)]
        return export_edgetpu(card, out, calib_dir, calib_count,
                              bias_correction=bias_correction)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()          # a failed export leaves no empty folder behind
        raise


def register(subparsers) -> None:
    """Add ``pspnet-ros export``."""
    p = subparsers.add_parser('export', help='export a model card to ONNX / TFLite / Edge TPU')
    p.add_argument('card', help='model card YAML of a PyTorch model')
    p.add_argument('--format', required=True, choices=FORMATS, dest='fmt')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--calib-dir', default=None,
                   help='calibration images for int8 (e.g. ../shared/data/camvid/train)')
    p.add_argument('--calib-count', type=int, default=32,
                   help='calibration frames (default: 32)')
    p.add_argument('--no-bias-correction', dest='bias_correction', action='store_false',
                   help='int8: keep the biases as trained instead of cancelling the mean '
                   'shift weight rounding causes (for comparison)')
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    import sys
    try:
        results = export(args.card, args.fmt, args.out, args.calib_dir, args.calib_count,
                         args.bias_correction)
    except ExportError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    for r in results:
        print(f'{r.format}: {r.model} (card {r.card})')
        if r.ops:
            counts = {op: r.ops.count(op) for op in sorted(set(r.ops))}
            print('  ops: ' + ', '.join(f'{k} x{v}' for k, v in counts.items()))
        for n in r.notes:
            print('  ' + n.replace('\n', '\n  '))
    return 0
