"""YAML files read with one-line errors: the file, line and column, and the problem."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

# Files that hold weights or exported models, never a card or parameters.
WEIGHT_SUFFIXES = ('.safetensors', '.pth', '.pt', '.onnx', '.tflite')


def yaml_error(path: str | os.PathLike, exc: yaml.YAMLError) -> str:
    """``FILE:LINE:COLUMN: not valid YAML: PROBLEM (CONTEXT)`` on one line (PyYAML's own
    text spans several lines with a quoted excerpt)."""
    mark = getattr(exc, 'problem_mark', None) or getattr(exc, 'context_mark', None)
    problem = getattr(exc, 'problem', None) or str(exc).strip().splitlines()[0]
    context = getattr(exc, 'context', None)
    where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else str(path)
    return f'{where}: not valid YAML: {problem}' + (f' ({context})' if context else '')


def weights_file_hint(path: str | os.PathLike) -> str:
    """For a weights or model file given where a YAML file belongs: a sentence saying so and
    naming its card when one lies beside it; '' for any other file."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        return ''
    cards = [c for c in (path.with_suffix('.yaml'), Path(f'{path}.yaml')) if c.is_file()]
    beside = f' ({cards[0]})' if cards else ''
    return f'{path} is a weights file; pass its card (.yaml){beside}'


def load_yaml(path: str | os.PathLike, error: type[Exception] = ValueError) -> Any:
    """The data in the YAML file ``path``; ``error`` with a one-line message when it is
    missing, binary (e.g. a weights file) or not valid YAML."""
    path = Path(path)
    hint = weights_file_hint(path)
    if hint:
        raise error(hint)
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise error(f'{path}: file not found') from None
    except UnicodeDecodeError as exc:
        raise error(f'{path} is not a text file (byte {exc.start} is not UTF-8); pass a YAML '
                    'file') from None
    except OSError as exc:
        raise error(f'{path}: cannot read it ({exc.strerror})') from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(yaml_error(path, exc)) from None
