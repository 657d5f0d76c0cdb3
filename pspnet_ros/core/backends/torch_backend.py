"""PyTorch backend (CPU, CUDA): eager, optionally fp16, channels_last, CUDA graphs, compile."""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..card import ModelCard
from ..model import PSPNet, fuse_conv_bn
from ..network import build_network
from ..threads import thread_count
from ..weights import load_into, load_state_dict
from .base import Backend, BackendError, BackendUnavailable

LOG = logging.getLogger('pspnet_ros.backends')


def build_model(card: ModelCard, load_weights: bool = True) -> PSPNet:
    """Build the PSPNet a card describes, optionally loading its weights strictly."""
    model = build_network(card.network, aux=False)
    if load_weights:
        state = load_state_dict(card.weights_path)
        state = {k: v for k, v in state.items() if not k.startswith('aux.')}
        load_into(model, state, strict=True)
    return model.eval()


class TorchBackend(Backend):
    """PSPNet in PyTorch; returns float32 logits on the network's output grid (stride 4, 8 or 16).

    Args:
        card: a card with ``.safetensors``/``.pth`` weights.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        fp16: half precision (CUDA only; ignored with a warning on CPU).
        channels_last: NHWC memory format (default; same masks, about 2x faster on CPU here
            and faster convolutions on GPUs).
        cuda_graphs: capture one CUDA graph per input shape and replay it (CUDA only).
        compile: ``torch.compile`` the model; ``True`` or a compile mode string.
        threads: intra-op CPU threads (0 keeps the process setting, which
            ``core.threads.configure_threads`` derives from the usable CPUs); capped at the
            usable CPUs.
        fuse_bn: fold BatchNorm into the preceding convolutions (default; the outputs equal
            the unfused model's to float rounding, about 1e-7 of the logit range).
        model: a ready ``nn.Module`` with ``forward_logits`` instead of the card's weights
            (benchmarks with random weights).
    """

    name = 'torch'

    def __init__(self, card: ModelCard, device: str = 'cpu', fp16: bool = False,
                 channels_last: bool = True, cuda_graphs: bool = False,
                 compile: bool | str = False, threads: int = 0, fuse_bn: bool = True,
                 model=None):
        super().__init__(card)
        if model is None and card.format != 'safetensors' and not str(card.weights).endswith(
                ('.pth', '.pt')):
            raise BackendError(f'torch backend needs .safetensors/.pth weights, card '
                               f'{card.name} has format {card.format!r}')
        cuda = device.startswith('cuda')
        if cuda and not torch.cuda.is_available():
            raise BackendUnavailable(
                f'device {device!r} requested but torch.cuda.is_available() is False: install '
                'a CUDA build of PyTorch (pip install torch --index-url '
                'https://download.pytorch.org/whl/cu128) and check the NVIDIA driver '
                '(nvidia-smi), or use device: cpu')
        if not cuda and device != 'cpu':
            raise BackendError(f'torch backend device must be cpu, cuda or cuda:N, got {device!r}')
        for flag, value in (('fp16', fp16), ('cuda_graphs', cuda_graphs)):
            if value and not cuda:
                LOG.warning('torch backend: %s needs CUDA; running without it on %s', flag,
                            device)
        if threads > 0:
            torch.set_num_threads(thread_count(threads))
        self.device = device
        self.dtype = torch.float16 if fp16 and cuda else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net = model if model is not None else build_model(card)
        if fuse_bn:
            net = fuse_conv_bn(net)
        self.model = net.eval().to(device=device, dtype=self.dtype,
                                   memory_format=self.memory_format)
        self._forward = self.model.forward_logits
        if compile:
            mode = compile if isinstance(compile, str) else None
            self._forward = torch.compile(self.model.forward_logits, mode=mode)
        self.cuda_graphs = bool(cuda_graphs and cuda)
        self._graphs: dict[tuple, tuple] = {}
        self.details = {'precision': 'fp16' if self.dtype == torch.float16 else 'fp32',
                        'channels_last': bool(channels_last), 'fuse_bn': bool(fuse_bn)}
        if self.cuda_graphs:
            self.details['cuda_graphs'] = True
        if compile:
            self.details['compile'] = compile if isinstance(compile, str) else 'default'

    def _to_input(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.device != 'cpu':
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.dtype).contiguous(memory_format=self.memory_format)

    def _graph_for(self, x: torch.Tensor):
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm up kernels/cuDNN autotuning outside the capture
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        return self._graphs[key]

    @torch.inference_mode()
    def run_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Run on a tensor already on the device (benchmarks); returns a device tensor."""
        if self.cuda_graphs:
            graph, static_in, static_out = self._graph_for(x)
            static_in.copy_(x)
            graph.replay()
            return static_out
        return self._forward(x)

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_tensor(self._to_input(batch)).float().cpu().numpy()
