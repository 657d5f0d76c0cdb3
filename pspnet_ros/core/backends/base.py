"""The backend interface: a preprocessed batch in, class scores or labels out."""
from __future__ import annotations

import abc

import numpy as np

from ..card import ModelCard


class BackendError(RuntimeError):
    """A backend failed to load or run a model."""


class BackendUnavailable(BackendError):
    """The runtime, library or device a backend needs is not present (message says how to
    install or enable it)."""


class Backend(abc.ABC):
    """Runs one model. Subclasses set ``name`` and ``device`` and implement ``run``.

    ``run`` takes a batch laid out as the card says (``input_layout``, ``input_dtype``) and
    returns either float logits ``(N, C, h, w)`` or integer labels ``(N, h, w)``, as the card's
    ``output_kind`` says. ``h, w`` may be smaller than the input (e.g. output stride 8).
    """

    name = 'base'

    def __init__(self, card: ModelCard):
        self.card = card
        self.device = 'cpu'

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run inference on a preprocessed batch."""

    def describe(self) -> str:
        return f'{self.name} on {self.device}'


def create_backend(name: str, card: ModelCard, device: str = 'cpu', **options) -> Backend:
    """Instantiate the backend called ``name`` for ``card``."""
    if name == 'torch':
        from .torch_backend import TorchBackend
        return TorchBackend(card, device=device, **options)
    raise BackendError(f'unknown backend {name!r}; available: torch')
