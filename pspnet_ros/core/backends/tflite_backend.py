"""TFLite backends: LiteRT (or tflite-runtime) interpreter with XNNPACK, and Edge TPU."""
from __future__ import annotations

import ctypes
import platform

import numpy as np

from ..card import ModelCard
from ..preprocess import normalise
from ..threads import thread_count
from .base import Backend, BackendError, BackendUnavailable, require_format

TFLITE_FORMATS = ('tflite', 'tflite_int8', 'edgetpu')
INSTALL_HINT = 'pip install ai-edge-litert (or tflite-runtime on numpy<2 systems)'
EDGETPU_LIBRARY = {'Linux': 'libedgetpu.so.1', 'Darwin': 'libedgetpu.1.dylib',
                   'Windows': 'edgetpu.dll'}.get(platform.system(), 'libedgetpu.so.1')
EDGETPU_HINT = ('install the Edge TPU runtime: add the Coral apt repository '
                '(https://coral.ai/docs/accelerator/get-started) and run '
                '`sudo apt-get install libedgetpu1-std`, then plug in the Coral device '
                '(USB) or load the gasket/apex driver (PCIe)')


def import_interpreter():
    """``(Interpreter, load_delegate, OpResolverType or None, package name)``."""
    try:
        from ai_edge_litert import interpreter as mod
        package = 'ai-edge-litert'
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod
            package = 'tflite-runtime'
        except ImportError as exc:
            raise BackendUnavailable(f'TFLite backends need a TFLite interpreter ({exc}); '
                                     f'install it: {INSTALL_HINT}') from exc
    return mod.Interpreter, mod.load_delegate, getattr(mod, 'OpResolverType', None), package


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Real values -> integer tensor values (``q = round(x / scale) + zero_point``)."""
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def op_names(interpreter) -> list[str]:
    """The operator names of a loaded interpreter's graph, in execution order."""
    return [op['op_name'] for op in interpreter._get_ops_details()]


class TFLiteBackend(Backend):
    """Runs a ``.tflite`` model with the LiteRT interpreter on the CPU.

    Quantised inputs are quantised here from the batch's real values (a batch already in the
    input's integer type is passed through, e.g. raw uint8 pixels for Coral models); quantised
    logits are de-quantised to float32. Arg-maxed label outputs are returned as they are.

    Args:
        card: a card with ``format`` ``tflite``, ``tflite_int8`` or ``edgetpu``.
        device: ``cpu``.
        num_threads: interpreter threads (0: one per usable CPU; capped at the usable CPUs).
        xnnpack: use the XNNPACK delegate (LiteRT's default CPU acceleration).
    """

    name = 'tflite'

    def __init__(self, card: ModelCard, device: str = 'cpu', num_threads: int = 0,
                 xnnpack: bool = True):
        super().__init__(card)
        if device != 'cpu':
            raise BackendError(f'backend tflite runs on cpu, got device {device!r}; use backend '
                               'edgetpu for a Coral device')
        path = require_format(card, self.name, TFLITE_FORMATS, 'tflite')
        Interpreter, _, resolver, package = import_interpreter()
        threads = thread_count(num_threads)
        kwargs = {}
        if resolver is not None and not xnnpack:
            kwargs['experimental_op_resolver_type'] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = self._load(Interpreter, path, num_threads=threads, **kwargs)
        self.details = {'runtime': package, 'num_threads': threads,
                        'xnnpack': bool(xnnpack and resolver is not None)}
        self._setup()
        self._xnnpack = bool(xnnpack)

    def replica(self, num_threads: int) -> TFLiteBackend:
        """An interpreter of its own (an interpreter runs one call at a time)."""
        return TFLiteBackend(self.card, self.device, num_threads, self._xnnpack)

    @staticmethod
    def _load(Interpreter, path, **kwargs):
        try:
            interpreter = Interpreter(model_path=str(path), **kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f'TFLite interpreter could not load {path}: {exc}') from exc
        return interpreter

    def _setup(self) -> None:
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(v) for v in self._in['shape'])

    def input_table(self) -> np.ndarray | None:
        dtype = np.dtype(self._in['dtype'])
        scale, zero_point = self._in['quantization']
        if (self.card.input_dtype == 'uint8' or dtype.itemsize != 1 or dtype.kind not in 'iu'
                or not scale):
            return None
        mean, std = self.card.mean, self.card.std
        pixels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], len(mean), axis=1)
        return quantize(normalise(pixels, mean, std), scale, zero_point, dtype)

    def _prepare(self, batch: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._in['dtype'])
        if batch.dtype == dtype:
            return batch
        scale, zero_point = self._in['quantization']
        if dtype.kind in 'iu' and scale:
            return quantize(batch, scale, zero_point, dtype)
        return batch.astype(dtype)

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        if tuple(x.shape) != self.input_shape:
            raise BackendError(f'model {self.card.weights_path.name} takes input '
                               f'{self.input_shape}, got {tuple(x.shape)}; static TFLite '
                               'models need the card input_size')
        self.interpreter.set_tensor(self._in['index'], self._prepare(x))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._out['index'])
        scale, zero_point = self._out['quantization']
        if self.card.output_kind == 'logits' and out.dtype.kind in 'iu' and scale:
            return dequantize(out, scale, zero_point)
        return out.copy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] == self.input_shape[0]:
            return self._run_one(batch)
        # Static batch-1 models (Edge TPU needs them) take a batch one image at a time.
        return np.concatenate([self._run_one(batch[i:i + 1]) for i in range(batch.shape[0])])


class EdgeTPUBackend(TFLiteBackend):
    """Runs a quantised ``.tflite`` model through the Edge TPU delegate.

    An ``*_edgetpu.tflite`` model from ``edgetpu_compiler`` runs its mapped ops on the TPU;
    an uncompiled int8 model loads too but runs entirely on the CPU.

    Args:
        card: a card with ``format`` ``edgetpu``, ``tflite_int8`` or ``tflite``.
        device: Edge TPU selector: ``usb``, ``usb:N``, ``pci``, ``pci:N``, or ``cpu`` /
            ``edgetpu`` for the first one found.
        num_threads: interpreter threads for the ops left on the CPU (0: one per usable CPU;
            capped at the usable CPUs).
    """

    name = 'edgetpu'

    def replica(self, num_threads: int) -> None:
        return None         # one device: its batches take turns

    def __init__(self, card: ModelCard, device: str = 'cpu', num_threads: int = 0):
        Backend.__init__(self, card)
        path = require_format(card, self.name, TFLITE_FORMATS, 'edgetpu')
        Interpreter, load_delegate, _, package = import_interpreter()
        selector = device.removeprefix('edgetpu').lstrip(':')
        if selector == 'cpu':
            selector = ''
        if selector and selector.split(':')[0] not in ('usb', 'pci'):
            raise BackendError(f'edgetpu device must be usb, usb:N, pci or pci:N, got {device!r}')
        options = {'device': selector} if selector else {}
        try:
            # Load the library first: a Delegate whose library failed to load is half-built,
            # and its __del__ prints "AttributeError: ... '_library'" when Python exits.
            ctypes.CDLL(EDGETPU_LIBRARY)
            delegate = load_delegate(EDGETPU_LIBRARY, options)
        except (ValueError, OSError) as exc:
            # Documented as ValueError; a missing library raises OSError from ctypes.
            raise BackendUnavailable(f'Edge TPU delegate {EDGETPU_LIBRARY} could not be loaded '
                                     f'({exc}); {EDGETPU_HINT}') from exc
        threads = thread_count(num_threads)
        self.interpreter = self._load(Interpreter, path, num_threads=threads,
                                      experimental_delegates=[delegate])
        self.device = f'edgetpu:{selector}' if selector else 'edgetpu'
        self.details = {'runtime': package, 'delegate': EDGETPU_LIBRARY,
                        'compiled': path.stem.endswith('_edgetpu')}
        self._setup()
