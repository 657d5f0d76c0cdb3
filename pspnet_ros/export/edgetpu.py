"""Edge TPU: what makes an int8 TFLite file mappable, and ``edgetpu_compiler`` when present."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess

import numpy as np

from ..core.card import ModelCard
from .common import _append, _write_card, ExportError, ExportResult

# Ops the Edge TPU compiler cannot map (or that split the graph) in a conv segmentation net.
EDGETPU_FORBIDDEN_OPS = ('GATHER', 'GATHER_ND', 'TRANSPOSE', 'PADV2', 'DEQUANTIZE', 'QUANTIZE',
                         'CAST')


def edgetpu_problems(path: str | os.PathLike) -> list[str]:
    """Why a ``.tflite`` file is not Edge TPU ready (empty when it is): int8/uint8 NHWC static
    input and output, no ops from ``EDGETPU_FORBIDDEN_OPS``."""
    from ..core.backends.tflite_backend import import_interpreter, op_names
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
    from .tflite import export_tflite_int8
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
