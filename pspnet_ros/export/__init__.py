"""Export a model card's PSPNet to ONNX, TFLite float, TFLite int8 and Edge TPU, each file with
a model card of its own (``pspnet-ros export``)."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.card import ModelCard
from .common import ExportDependencyMissing, ExportError, ExportResult, _need
from .edgetpu import EDGETPU_FORBIDDEN_OPS, edgetpu_problems

FORMATS = ('onnx', 'tflite', 'tflite-int8', 'edgetpu')

__all__ = ['EDGETPU_FORBIDDEN_OPS', 'ExportDependencyMissing', 'ExportError', 'ExportResult',
           'FORMATS', 'edgetpu_problems', 'export']


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
        from .edgetpu import export_edgetpu
        from .onnx import export_onnx
        from .tflite import export_tflite, export_tflite_int8
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
