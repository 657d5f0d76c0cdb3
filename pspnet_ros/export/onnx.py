"""ONNX export (torch.onnx dynamo exporter) with a dynamic batch axis."""
from __future__ import annotations

from pathlib import Path

from ..core.card import ModelCard
from .common import _append, _Logits, _load_torch_model, _need, _out_stem, _progress, _quiet, \
    _write_card, ExportResult


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
