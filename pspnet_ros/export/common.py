"""What every export shares: errors, results, optional imports, quiet converters, the
exported module and the cards written beside each file."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
import sys
import tempfile

from ..core.card import ModelCard

EXPORT_REQUIREMENTS = ('pip install -r requirements-export.txt, or use the .venv-export that '
                       '`make test-export` creates (docs/BACKENDS.md)')


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


def _load_torch_model(card: ModelCard):
    from ..core.backends.torch_backend import build_model
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


def _append(notes: str, text: str) -> str:
    return f'{notes} {text}'.strip() if notes else text
