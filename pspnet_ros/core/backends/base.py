"""The backend interface: a preprocessed batch in, class scores or labels out."""
from __future__ import annotations

import abc
import importlib
import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from ..card import ModelCard
from .options import check_options, member_options, OptionError

LOG = logging.getLogger('pspnet_ros.backends')

# name -> (module, class); modules are imported only when the backend is asked for, so the
# plain install needs none of the optional runtimes.
BACKENDS = {
    'torch': ('.torch_backend', 'TorchBackend'),
    'onnxruntime': ('.onnxruntime_backend', 'OnnxRuntimeBackend'),
    'tflite': ('.tflite_backend', 'TFLiteBackend'),
    'edgetpu': ('.tflite_backend', 'EdgeTPUBackend'),
}
DEFAULT_CHAIN = ('edgetpu', 'onnxruntime', 'tflite', 'torch')
# On the CPU, fastest first: int8 TFLite (XNNPACK) is about 2-3x the float ONNX Runtime and
# torch paths on 2 x86 cores (docs/RESULTS.md); an Edge TPU, when present, beats them all.
CPU_CHAIN = ('edgetpu', 'tflite', 'onnxruntime', 'torch')
# The files `pspnet-ros export` writes next to a card, per backend, preferred first: ``auto``
# runs a card's shipped export when the card itself is not in that backend's format.
EXPORT_SUFFIXES = {
    'edgetpu': ('_int8_edgetpu.tflite.yaml',),
    'tflite': ('_int8.tflite.yaml', '_float.tflite.yaml'),
    'onnxruntime': ('.onnx.yaml',),
}
# Card formats those backends run themselves.
BACKEND_FORMATS = {
    'onnxruntime': ('onnx',),
    'tflite': ('tflite', 'tflite_int8', 'edgetpu'),
    'edgetpu': ('edgetpu', 'tflite_int8', 'tflite'),
}


class BackendError(RuntimeError):
    """A backend failed to load or run a model."""


class BackendUnavailable(BackendError):
    """The runtime, library or device a backend needs is not present (message says how to
    install or enable it)."""


class Backend(abc.ABC):
    """Runs one model. Subclasses set ``name`` and ``device`` and implement ``run``.

    ``run`` takes a batch laid out as the card says (``input_layout``, ``input_dtype``) and
    returns either float logits ``(N, C, h, w)`` or integer labels ``(N, h, w)``, as the card's
    ``output_kind`` says. ``h, w`` may be smaller than the input (the network's output grid:
    stride 4 for the shipped model, 8 or 16 for others).

    ``details`` holds what the backend resolved (providers, delegate, precision) and
    ``fallbacks`` the ``(backend, reason)`` pairs that ``auto`` skipped before this one; both
    are meant for diagnostics.
    """

    name = 'base'

    def __init__(self, card: ModelCard):
        self.card = card
        self.device = 'cpu'
        self.details: dict[str, object] = {}
        self.fallbacks: list[tuple[str, str]] = []

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run inference on a preprocessed batch."""

    def input_table(self) -> np.ndarray | None:
        """The model's input value for each 8-bit pixel value of each channel, ``(256, 3)``,
        when its input is a quantised 8-bit tensor fed normalised pixels (the card's mean and
        std): preprocessing is then a resize and a table lookup
        (``core.preprocess.prepare_by_table``). None for float inputs and for cards that take
        raw pixels (``input_dtype: uint8``)."""
        return None

    def replica(self, num_threads: int) -> Backend | None:
        """Another instance of this backend with state of its own and ``num_threads`` CPU
        threads, for a second thread to run beside this one; None when the backend cannot run
        beside itself (one device) or need not (a module safe to share)."""
        return None

    def describe(self) -> str:
        extra = ', '.join(f'{k}={v}' for k, v in self.details.items())
        return f'{self.name} on {self.device}' + (f' ({extra})' if extra else '')

    @property
    def selection(self) -> str:
        """One line saying which backend runs and why earlier ``auto`` choices were skipped."""
        text = self.describe()
        if self.fallbacks:
            text += '; skipped ' + '; '.join(f'{n}: {r}' for n, r in self.fallbacks)
        return text


def require_format(card: ModelCard, backend: str, formats: Iterable[str], export_as: str) -> Path:
    """The card's model file, checked to be one of ``formats`` and present."""
    formats = tuple(formats)
    if card.format not in formats:
        raise BackendError(
            f'backend {backend} runs {"/".join(formats)} models but card {card.name} has format '
            f'{card.format!r}; export one with `pspnet-ros export CARD --format {export_as} '
            '--out DIR` and pass the card written next to it')
    path = card.weights_path
    if not path.is_file():
        raise BackendError(f'model file of card {card.name} not found: {path}')
    return path


def _split_chain(chain: str | Iterable[str] | None, device: str = 'cpu') -> list[str]:
    if chain is None:
        return list(CPU_CHAIN if device == 'cpu' else DEFAULT_CHAIN)
    if isinstance(chain, str):
        chain = chain.split(',')
    items = [c.strip() for c in chain if c.strip()]
    if not items:
        raise BackendError('auto backend chain is empty; give e.g. "edgetpu,onnxruntime,torch"')
    return items


def export_card(card: ModelCard, backend: str) -> ModelCard:
    """The card ``backend`` runs for ``card``: ``card`` itself when it is in one of the
    backend's formats, else the export of it that ``pspnet-ros export`` wrote next to it
    (e.g. ``m_int8.tflite.yaml`` next to ``m.yaml``); ``BackendError`` when there is none."""
    if backend not in EXPORT_SUFFIXES or card.format in BACKEND_FORMATS[backend]:
        return card
    folder = card.path.parent if card.path is not None else None
    for suffix in EXPORT_SUFFIXES[backend]:
        if folder is not None and (folder / f'{card.name}{suffix}').is_file():
            return ModelCard.load(folder / f'{card.name}{suffix}')
    fmt = {'edgetpu': 'edgetpu', 'tflite': 'tflite-int8'}.get(backend, 'onnx')
    raise BackendError(f'no {backend} export of {card.name} next to its card (looked for '
                       f'{", ".join(card.name + s for s in EXPORT_SUFFIXES[backend])}); '
                       f'make one with `pspnet-ros export CARD --format {fmt} --out DIR`')


def _create_auto(card: ModelCard, device: str, chain=None, **options) -> Backend:
    """Try each ``name`` or ``name:card.yaml`` of ``chain`` in order; return the first that
    loads, with the reasons the others failed in ``fallbacks``.

    A member without its own card runs ``card`` or, when ``card`` is in another format, the
    export of it shipped next to it (``export_card``). On a GPU device a member that would
    only run on the CPU is skipped, so ``auto`` never silently leaves the GPU.
    """
    failures: list[tuple[str, str]] = []
    for item in _split_chain(chain, device):
        name, _, card_path = item.partition(':')
        if name == 'auto' or name not in BACKENDS:
            raise BackendError(f'unknown backend {name!r} in auto chain; choose from '
                               f'{sorted(BACKENDS)}')
        try:
            member_card = ModelCard.load(card_path) if card_path else export_card(card, name)
            cls = _backend_class(name)
            backend = cls(member_card, device=device, **member_options(name, options))
        except (BackendError, OSError, ValueError) as exc:
            failures.append((name, str(exc).splitlines()[0] if str(exc) else repr(exc)))
            continue
        if device.startswith('cuda') and backend.device == 'cpu':
            failures.append((name, f'would run on cpu, not {device}'))
            continue
        backend.fallbacks = failures
        if failures:
            LOG.warning('backend auto: using %s; %s', backend.describe(),
                        '; '.join(f'{n} unavailable: {r}' for n, r in failures))
        else:
            LOG.info('backend auto: using %s', backend.describe())
        return backend
    raise BackendUnavailable('no backend of the auto chain could load: '
                             + '; '.join(f'{n}: {r}' for n, r in failures))


def _backend_class(name: str) -> type:
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module, __package__), cls)


def applicable_options(name: str, options: dict) -> tuple[dict, str]:
    """The ``options`` backend ``name`` takes, typed and range-checked (``options.py``), and a
    note naming those dropped because they belong to other backends (e.g. torch's
    ``channels_last`` with tflite); empty when none. Imports no backend module.

    An option no backend knows (a typo) or a bad value raises ``BackendError``.
    """
    if name != 'auto' and name not in BACKENDS:
        return dict(options), ''
    try:
        kept, dropped = check_options(name, options)
    except OptionError as exc:
        raise BackendError(str(exc)) from None
    note = (f'backend options {dropped} do not apply to backend {name}; ignored'
            if dropped else '')
    return kept, note


def create_backend(name: str, card: ModelCard, device: str = 'cpu', **options) -> Backend:
    """Instantiate the backend called ``name`` for ``card``.

    Args:
        name: ``torch``, ``onnxruntime``, ``tflite``, ``edgetpu`` or ``auto``.
        card: the model card (its ``format`` must suit the backend).
        device: ``cpu``, ``cuda``, ``cuda:N``; for ``edgetpu`` an optional device selector
            such as ``usb``, ``usb:0`` or ``pci:0`` (``cpu`` means any Edge TPU).
        options: backend options (see each backend class); for ``auto``, ``chain`` (names or
            ``name:card.yaml``, comma-separated or a list; default on ``cpu``
            ``edgetpu,tflite,onnxruntime,torch``, elsewhere
            ``edgetpu,onnxruntime,tflite,torch``), per-backend mappings under the backend's
            name, and shared options passed to the backends that accept them. Options of
            other backends are dropped with a warning (``applicable_options``).
            Members run the card's shipped export when the card is not in their format.
    """
    if name != 'auto' and name not in BACKENDS:
        raise BackendError(f'unknown backend {name!r}; available: {", ".join(BACKENDS)}, auto')
    options, note = applicable_options(name, options)
    if name == 'auto':
        return _create_auto(card, device, **options)
    if note:
        LOG.warning(note)
    return _backend_class(name)(card, device=device, **options)
