"""PyTorch eager backend (CPU, CUDA)."""
from __future__ import annotations

import numpy as np
import torch

from ..card import ModelCard
from ..model import PSPNet
from ..weights import load_into, load_state_dict
from .base import Backend, BackendError, BackendUnavailable


def build_model(card: ModelCard, load_weights: bool = True) -> PSPNet:
    """Build the PSPNet a card describes, optionally loading its weights strictly."""
    model = PSPNet(card.architecture, card.num_classes, head_channels=card.head_channels,
                   aux=False)
    if load_weights:
        state = load_state_dict(card.weights_path)
        state = {k: v for k, v in state.items() if not k.startswith('aux.')}
        load_into(model, state, strict=True)
    return model.eval()


class TorchBackend(Backend):
    """PSPNet in PyTorch eager mode; returns logits at output stride 8."""

    name = 'torch'

    def __init__(self, card: ModelCard, device: str = 'cpu', fp16: bool = False,
                 channels_last: bool = False, threads: int = 0):
        super().__init__(card)
        if card.format != 'safetensors' and not str(card.weights).endswith(('.pth', '.pt')):
            raise BackendError(f'torch backend needs .safetensors/.pth weights, card '
                               f'{card.name} has format {card.format!r}')
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise BackendUnavailable(
                f'device {device!r} requested but torch.cuda.is_available() is False: install '
                'a CUDA build of PyTorch and check the NVIDIA driver, or use device: cpu')
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = device
        self.dtype = torch.float16 if fp16 and device.startswith('cuda') else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(card).to(device=device, dtype=self.dtype,
                                          memory_format=self.memory_format)

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device, self.dtype).contiguous(
            memory_format=self.memory_format)
        return self.model.forward_logits(x).float().cpu().numpy()
