"""Safe checkpoint loading and saving, with the key map of mmsegmentation PSPNet checkpoints.

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read with safetensors and
``.pth``/``.pt`` files with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """A weights file is missing, unsafe, corrupt or does not match the model."""


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pth``/``.pt`` checkpoint, safely.

    Checkpoints that wrap the weights (``{'state_dict': ...}``, ``{'model': ...}``) and
    DataParallel ``module.`` prefixes are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f'weights file not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError, OSError, ... depending on the damage
            raise WeightsError(f'{path} is not a valid safetensors file: {exc}') from exc
    try:
        obj = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsError(
            f'{path} could not be loaded as plain tensors (weights_only=True refuses pickled '
            f'code and fails on corrupt files): {type(exc).__name__}: {str(exc)[:300]}'
        ) from exc
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f'{path} does not hold a state dict of tensors')
    if obj and all(k.startswith('module.') for k in obj):
        obj = {k[len('module.'):]: v for k, v in obj.items()}
    return obj


# mmsegmentation PSPNet (ResNetV1c backbone, PSPHead, FCNHead aux) -> semseg-style names.
MMSEG_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r'^backbone\.stem\.', 'layer0.'),
    (r'^backbone\.(layer[1-4])\.', r'\1.'),
    (r'^decode_head\.psp_modules\.(\d+)\.1\.conv\.', r'ppm.features.\1.1.'),
    (r'^decode_head\.psp_modules\.(\d+)\.1\.bn\.', r'ppm.features.\1.2.'),
    (r'^decode_head\.bottleneck\.conv\.', 'cls.0.'),
    (r'^decode_head\.bottleneck\.bn\.', 'cls.1.'),
    (r'^decode_head\.conv_seg\.', 'cls.4.'),
    (r'^auxiliary_head\.convs\.0\.conv\.', 'aux.0.'),
    (r'^auxiliary_head\.convs\.0\.bn\.', 'aux.1.'),
    (r'^auxiliary_head\.conv_seg\.', 'aux.4.'),
)


def convert_mmseg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an mmsegmentation PSPNet state dict to this package's module names."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in MMSEG_KEY_MAP:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        else:
            raise WeightsError(f'mmsegmentation key {key!r} has no mapping; is this a PSPNet '
                               'with a ResNetV1c backbone?')
        out[new] = value
    return out


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """Return ``'mmseg'`` or ``'semseg'`` (this package's own layout) for a state dict."""
    if any(k.startswith(('backbone.', 'decode_head.')) for k in state):
        return 'mmseg'
    return 'semseg'


def mismatch_text(missing: list[str], unexpected: list[str], wrong: list[str],
                  wrong_label: str = 'with wrong shape', limit: int = 5) -> str:
    """``'N missing: a, b; N unexpected: ...; N <wrong_label>: ...'`` for the non-empty lists,
    each naming its first ``limit`` entries."""
    def head(items):
        more = f' (+{len(items) - limit} more)' if len(items) > limit else ''
        return ', '.join(items[:limit]) + more
    return '; '.join(f'{len(items)} {label}: {head(items)}' for label, items in
                     (('missing', missing), ('unexpected', unexpected), (wrong_label, wrong))
                     if items)


def load_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Load ``state`` into ``model`` with exact key and shape checks and a readable report.

    BatchNorm ``num_batches_tracked`` counters are the only keys allowed to be absent
    (checkpoints from PyTorch < 0.4.1 lack them; they do not affect inference).
    """
    if detect_layout(state) == 'mmseg':
        state = convert_mmseg(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    wrong = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
             for k in state if k in own and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or wrong):
        raise WeightsError('checkpoint does not match the model; '
                           + mismatch_text(missing, unexpected, wrong))
    state = {k: v for k, v in state.items() if k in own and state[k].shape == own[k].shape}
    model.load_state_dict(state, strict=False)


def save_safetensors(model: nn.Module, path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> None:
    """Save a model's tensors as safetensors (contiguous copies, no pickling)."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    # safetensors creates the file 0600; weights are meant to be shared like any output file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
