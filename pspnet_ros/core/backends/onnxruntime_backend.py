"""ONNX Runtime backend: execution providers tried in the configured order."""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from ..card import ModelCard
from ..threads import thread_count
from .base import Backend, BackendError, BackendUnavailable, require_format

LOG = logging.getLogger('pspnet_ros.backends')

# Short names accepted in configuration, and the provider each stands for.
PROVIDER_ALIASES = {
    'tensorrt': 'TensorrtExecutionProvider',
    'cuda': 'CUDAExecutionProvider',
    'openvino': 'OpenVINOExecutionProvider',
    'coreml': 'CoreMLExecutionProvider',
    'cpu': 'CPUExecutionProvider',
}
DEFAULT_PROVIDERS = ('tensorrt', 'cuda', 'openvino', 'cpu')
INSTALL_HINT = ('pip install onnxruntime (CPU), onnxruntime-gpu (CUDA/TensorRT) or '
                'onnxruntime-openvino (Intel)')


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(f'backend onnxruntime needs the onnxruntime package ({exc}); '
                                 f'install it: {INSTALL_HINT}') from exc
    return onnxruntime


def resolve_providers(wanted: Iterable[str], available: Iterable[str]) -> tuple[list[str],
                                                                                list[str]]:
    """Providers of ``wanted`` (aliases or full names) that are ``available``, in order, and
    the ones that are not."""
    available = list(available)
    chosen, missing = [], []
    for p in wanted:
        full = PROVIDER_ALIASES.get(p.lower(), p)
        if full in available:
            if full not in chosen:
                chosen.append(full)
        else:
            missing.append(full)
    return chosen, missing


class OnnxRuntimeBackend(Backend):
    """Runs an ``.onnx`` model with ONNX Runtime.

    Args:
        card: a card with ``format: onnx``.
        device: ``cpu`` or ``cuda[:N]`` (the device id given to CUDA/TensorRT providers).
        providers: provider order (aliases ``tensorrt``, ``cuda``, ``openvino``, ``cpu`` or
            full names); those not in this ONNX Runtime build are skipped and listed in
            ``details['missing_providers']``.
        num_threads: intra-op threads (0: one per usable CPU; capped at the usable CPUs).
            Idle threads sleep instead of spinning, so a shared CPU keeps its cores.
    """

    name = 'onnxruntime'

    def __init__(self, card: ModelCard, device: str = 'cpu',
                 providers: Iterable[str] | str | None = None, num_threads: int = 0):
        super().__init__(card)
        path = require_format(card, self.name, ('onnx',), 'onnx')
        ort = import_onnxruntime()
        if isinstance(providers, str):
            providers = providers.split(',')
        if providers is None:
            # On device cpu the GPU providers are left out rather than silently used.
            providers = DEFAULT_PROVIDERS if device.startswith('cuda') else ('openvino', 'cpu')
        wanted = list(providers)
        chosen, missing = resolve_providers(wanted, ort.get_available_providers())
        if not chosen:
            raise BackendUnavailable(
                f'none of the ONNX Runtime providers {wanted} is in this build (it has '
                f'{ort.get_available_providers()}); install a build that has them: '
                f'{INSTALL_HINT}')
        device_id = int(device.split(':')[1]) if device.startswith('cuda:') else 0
        provider_args = [(p, {'device_id': device_id})
                         if p in ('CUDAExecutionProvider', 'TensorrtExecutionProvider')
                         else (p, {}) for p in chosen]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = thread_count(num_threads)
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # ONNX Runtime's pool spins between operators by default; on a shared CPU that takes
        # cores from other processes and lengthens the latency tail (docs/RESULTS.md).
        opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
        opts.add_session_config_entry('session.inter_op.allow_spinning', '0')
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=provider_args)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f'ONNX Runtime could not load {path}: {exc}') from exc
        active = self.session.get_providers()
        if missing:
            LOG.info('onnxruntime: providers %s not available; using %s', missing, active)
        self.device = device if any(p != 'CPUExecutionProvider' for p in active) else 'cpu'
        self.input_name = self.session.get_inputs()[0].name
        self.details = {'providers': active, 'num_threads': threads}
        if missing:
            self.details['missing_providers'] = missing

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
