"""Model cards: the small YAML file next to a weights file that says how to run it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any

import yaml

from .network import NetworkFields, NetworkSpec
from .yamlfile import load_yaml

OUTPUT_KINDS = ('logits', 'labels')
RESIZE_MODES = ('stretch', 'letterbox')
# Network input sides, in pixels. Above 4096 a forward pass needs tens of GB (a 100000-pixel
# side asks for 30-120 GB and dies mid-allocation); 1080p frames fit as they are.
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 8, 4096


def check_input_size(size, what: str = 'input_size') -> tuple[int, int]:
    """``size`` as ``(height, width)`` if both sides are within the supported range, else
    ``ValueError`` saying what was wrong."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f'{what} must be [height, width], got {size!r}') from None
    if not (MIN_INPUT_SIDE <= h <= MAX_INPUT_SIDE and MIN_INPUT_SIDE <= w <= MAX_INPUT_SIDE):
        raise ValueError(f'{what} must be [height, width] with each side in '
                         f'{MIN_INPUT_SIDE}..{MAX_INPUT_SIDE}, got {list(size)}')
    return h, w


class ModelCardError(ValueError):
    """A model card is missing, unreadable or inconsistent."""


@dataclass
class ModelCard(NetworkFields):
    """Everything needed to run a model: architecture, I/O contract, labels, provenance.

    Sizes are ``[height, width]``; ``mean``/``std`` are in 0..255 pixel units, applied to RGB.
    ``output_kind`` is ``logits`` (scores per class) or ``labels`` (already arg-maxed).
    """

    name: str
    weights: str
    label_set: str | dict          # a built-in set's name, or an embedded class list
    num_classes: int
    input_size: list[int]
    format: str = 'safetensors'
    mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    input_dtype: str = 'float32'
    input_layout: str = 'NCHW'
    output_kind: str = 'logits'
    output_layout: str = 'NCHW'
    resize_mode: str = 'stretch'
    licence: str = 'unknown'
    training_data: str = ''
    metrics: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ''
    notes: str = ''
    path: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        try:
            check_input_size(self.input_size)
        except ValueError as exc:
            raise ModelCardError(str(exc)) from None
        if self.output_kind not in OUTPUT_KINDS:
            raise ModelCardError(f'output_kind must be one of {OUTPUT_KINDS}, '
                                 f'got {self.output_kind!r}')
        if self.resize_mode not in RESIZE_MODES:
            raise ModelCardError(f'resize_mode must be one of {RESIZE_MODES}, '
                                 f'got {self.resize_mode!r}')
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelCardError('mean and std need three values each, std > 0')

    @property
    def network(self) -> NetworkSpec:
        """The PSPNet this card's weights belong to (``build_network`` builds it)."""
        return NetworkSpec.of(self, self.num_classes)

    @property
    def weights_path(self) -> Path:
        """The weights file, resolved relative to the card's folder."""
        w = Path(self.weights)
        if not w.is_absolute() and self.path is not None:
            w = self.path.parent / w
        return w

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'ModelCard':
        path = Path(path)
        if not path.is_file():
            raise ModelCardError(f'model card not found: {path}')
        data = load_yaml(path, ModelCardError)    # one-line errors; a weights file is named
        if not isinstance(data, dict):
            raise ModelCardError(f'{path} must hold a mapping')
        known = {f.name for f in dataclasses.fields(cls)} - {'path'}
        unknown = set(data) - known
        if unknown:
            raise ModelCardError(f'{path}: unknown keys {sorted(unknown)}')
        try:
            card = cls(**data)
        except TypeError as exc:
            raise ModelCardError(f'{path}: {exc}') from exc
        card.path = path
        return card

    def save(self, path: str | os.PathLike) -> None:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != 'path'}
        Path(path).write_text(yaml.safe_dump(data, sort_keys=False, width=99))
        self.path = Path(path)
